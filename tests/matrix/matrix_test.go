// Package matrix is dockroot's bad-input matrix (issue 4 §6): declarative
// blackbox cases, each "kernel cmdline + disk state → console line, onfail
// action, disk state after", run through the real boot sequence
// (hook.Boot with hook.NewEnv) in-process against a real loop btrfs whose
// Docker data root a private dockerd filled. It also holds the
// step-boundary failure injection (inject_test.go).
//
// Every case proves "nothing is lost": the layer the previous boot used
// keeps its subvolume ID and the marker file written into it, unless the
// case boots (then it is NAME.prev.1); no temporary layer leaks; the Docker
// store is byte-for-byte unchanged. docs/RELIABILITY.md §7 lists the cases;
// TestReliabilityDoc keeps that table in step with Cases.
//
// Root tier: run as root, `go test -count=1 ./tests/matrix/`;
// DOCKROOT_MATRIX_CONSOLE=1 (with -v) prints every case's console.
package matrix

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/hook"
	"github.com/dockroot/dockroot/internal/btrfs"
	"golang.org/x/sys/unix"
)

// Case is one row of the matrix: inputs, then expected outputs.
type Case struct {
	Name string
	// Cmdline is appended to baseCmdline (the last of a repeated key
	// wins). Placeholders: {root} (the disk's device), {digested},
	// {digest-repo}, {desk1-id}, {desk2-id}, {desk1-subvol}.
	Cmdline string
	Disk    []Mutation // applied to a fresh copy of the fixture disk, in order
	Want    Outcome
}

// Mutation changes the disk before the boot.
type Mutation struct {
	Desc  string
	Apply func(d *Disk) error
}

// Prev is where the layer the previous boot used must be afterwards.
type Prev int

const (
	// PrevDefault: PrevUntouched for a failed boot, PrevRotated for a
	// fresh one, PrevUntouched for a dockroot.onfail=previous fallback or
	// a dockroot.layer= boot.
	PrevDefault Prev = iota
	PrevUntouched
	PrevRotated // NAME.prev.1, same subvolume ID and marker
	PrevDeleted // dockroot.keep=0 and the boot committed a new layer
)

func (p Prev) String() string {
	return [...]string{"default", "NAME unchanged", "kept as NAME.prev.1", "deleted (keep=0)"}[p]
}

// Outcome is what the case must end in.
type Outcome struct {
	// Booted: the sequence reached switch_root with an init that resolves.
	Booted bool
	// Image is the fixture-image marker the booted root holds
	// (/etc/fixture-image), for fresh boots.
	Image string
	// Fallback is the layer a dockroot.onfail=previous boot used.
	Fallback string
	// Existing is the layer a dockroot.layer= boot mounted as it was left.
	Existing string
	// Step and Policy: for a failed boot, the step (hook.BootError.Step)
	// and the dockroot.onfail= policy that applies (hook.PolicyOf).
	Step   string
	Policy config.OnFail
	// Console is a regexp the console must match: the line that names the
	// thing and the fix.
	Console string
	Prev    Prev
	Checks  []Check
}

// Check is a further assertion on the booted root or the disk.
type Check struct {
	Desc string
	Run  func(d *Disk, r *Result) error
}

// TestMatrix runs every case on its own copy of the fixture disk.
func TestMatrix(t *testing.T) {
	f := pristine(t)
	start := time.Now()
	ran := 0
	for _, c := range allCases() {
		t.Run(c.Name, func(t *testing.T) {
			ran++
			runCase(t, f, c)
		})
	}
	t.Logf("matrix: %d cases in %v", ran, time.Since(start).Round(time.Millisecond))
}

func runCase(t *testing.T, f *fixture, c Case) {
	d := newDisk(t, f)
	for _, m := range c.Disk {
		if err := m.Apply(d); err != nil {
			t.Fatalf("disk state %q: %v", m.Desc, err)
		}
	}
	storeBefore, err := d.storeDigest()
	if err != nil {
		t.Fatal(err)
	}
	cmdline := f.expand(d.expand(strings.TrimSpace(baseCmdline+" "+c.Cmdline)), d.Root)
	r := bootDisk(d, cmdline, t.TempDir(), nil)
	defer r.release()
	w := c.Want
	fresh := w.Booted && w.Fallback == "" && w.Existing == ""
	if w.Prev == PrevDefault {
		w.Prev = PrevUntouched
		if fresh {
			w.Prev = PrevRotated
		}
	}
	show := func() string { return "console:\n" + r.Console }

	// The boot's end.
	switch {
	case w.Booted && r.Err != nil:
		t.Fatalf("boot failed at %q: %v\n%s", r.Step(), r.Err, show())
	case w.Booted && r.Switch == nil:
		t.Fatalf("boot returned without reaching switch_root\n%s", show())
	case w.Booted:
		if r.Switch.InitErr != nil {
			t.Errorf("switch_root to %s: %v", r.Switch.Init, r.Switch.InitErr)
		}
		checkBootedRoot(t, d, r, w, fresh)
	case r.Err == nil:
		t.Fatalf("boot succeeded; want a failure at step %q\n%s", w.Step, show())
	default:
		if r.Step() != w.Step || r.Policy() != w.Policy {
			t.Errorf("failed at step %q with dockroot.onfail=%s; want step %q, onfail=%s\n%s", r.Step(), r.Policy(), w.Step, w.Policy, show())
		}
		if r.Switch != nil {
			t.Errorf("a failed boot reached switch_root (%s)", r.Switch.Init)
		}
	}
	if w.Console != "" && !regexp.MustCompile(w.Console).MatchString(r.Console) {
		t.Errorf("console does not match %q\n%s", w.Console, show())
	}
	if !strings.Contains(r.Console, "dockroot: [") {
		t.Errorf("the console shows no step checklist\n%s", show())
	}

	// Nothing is lost.
	r.release()
	checkNothingLost(t, d, w.Prev, storeBefore)
	for _, ch := range w.Checks {
		if err := ch.Run(d, r); err != nil {
			t.Errorf("%s: %v", ch.Desc, err)
		}
	}
	if t.Failed() || os.Getenv("DOCKROOT_MATRIX_CONSOLE") == "1" {
		t.Logf("cmdline: %s\n%s", cmdline, show())
	}
}

// checkBootedRoot checks the root handed to switch_root: the layer just
// committed (by subvolume ID) holding the expected image and the top layer,
// or, after a fallback, the previous layer as it was left.
func checkBootedRoot(t *testing.T, d *Disk, r *Result, w Outcome, fresh bool) {
	t.Helper()
	root := r.Switch.NewRoot
	id, err := btrfs.SubvolID(root)
	if err != nil {
		t.Errorf("new root %s: %v", root, err)
		return
	}
	if r.Record != nil && r.Record.ReadOnly {
		var st unix.Statfs_t
		if err := unix.Statfs(root, &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
			t.Errorf("boot.json says ro, but the new root is mounted read-write (statfs flags %#x, %v)", st.Flags, err)
		}
	}
	if !fresh {
		if id != d.F.prevID {
			t.Errorf("booted subvolume %d; want the previous layer %d as it was left", id, d.F.prevID)
		}
		switch {
		case w.Fallback != "" && (r.Record == nil || r.Record.Fallback == nil || r.Record.Fallback.Layer != w.Fallback):
			t.Errorf("boot.json fallback = %+v; want layer %s", r.Record, w.Fallback)
		case w.Existing != "" && (r.Record == nil || r.Record.Layer.Subvolume != w.Existing || r.Record.Layer.Fresh || r.Record.Fallback != nil):
			t.Errorf("boot.json = %+v; want layer %s as it was left, no fallback", r.Record, w.Existing)
		}
		if got, _ := os.ReadFile(filepath.Join(root, markerFile)); string(got) != markerText {
			t.Errorf("fallback root lacks the previous boot's marker file: %q", got)
		}
		return
	}
	if id == d.F.prevID {
		t.Errorf("new root is the previous layer (subvolume %d), not a fresh one", id)
	}
	if r.Record == nil || r.Record.Layer.SubvolID != id || !r.Record.Layer.Fresh {
		t.Errorf("boot.json rw_layer = %+v; want fresh subvolume %d", r.Record, id)
	}
	if w.Image != "" {
		if got, _ := os.ReadFile(filepath.Join(root, "etc/fixture-image")); strings.TrimSpace(string(got)) != w.Image {
			t.Errorf("new root holds image %q; want %s", strings.TrimSpace(string(got)), w.Image)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, markerFile)); err == nil {
		t.Errorf("the fresh layer holds the previous boot's marker file")
	}
}

// checkNothingLost checks the layers after the boot: where the previous
// layer is (by subvolume ID, with its marker), that exactly the expected
// layers exist and no temporary one leaked, and that the Docker store is
// unchanged.
func checkNothingLost(t *testing.T, d *Disk, prev Prev, storeBefore string) {
	t.Helper()
	subs, err := d.subvolumes()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]uint64{}
	for _, s := range layerSubvolumes(subs) {
		names = append(names, s.Path)
		byName[s.Path] = s.ID
		if strings.Contains(s.Path, ".dockroot-tmp") {
			t.Errorf("leaked temporary subvolume %s (ID %d)", s.Path, s.ID)
		}
	}
	want := map[Prev][]string{
		PrevUntouched: {layerName},
		PrevRotated:   {layerName, layerName + ".prev.1"},
		PrevDeleted:   {layerName},
	}[prev]
	if extra := d.extraLayers; len(extra) > 0 && prev == PrevUntouched {
		want = append(want, extra...)
	}
	if fmt.Sprint(sorted(names)) != fmt.Sprint(sorted(want)) {
		t.Errorf("subvolumes outside the Docker store: %v; want %v (previous layer %s)", names, want, prev)
	}
	at := map[Prev]string{PrevUntouched: layerName, PrevRotated: layerName + ".prev.1"}[prev]
	if prev == PrevDeleted {
		for _, s := range subs {
			if s.ID == d.F.prevID {
				t.Errorf("the previous layer (ID %d) still exists as %s; keep=0 should have deleted it", s.ID, s.Path)
			}
		}
	} else {
		if byName[at] != d.F.prevID {
			t.Errorf("%s is subvolume %d; want the previous layer, %d", at, byName[at], d.F.prevID)
		}
		if got, err := os.ReadFile(d.path(at + "/" + markerFile)); err != nil || string(got) != markerText {
			t.Errorf("the previous layer's marker %s/%s: %q, %v", at, markerFile, got, err)
		}
	}
	if after, err := d.storeDigest(); err != nil {
		t.Error(err)
	} else if after != storeBefore {
		t.Error("the boot changed the Docker store (image metadata or subvolumes)")
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// onfailAction is what dockroot-init does for policy p as PID 1 with a
// shell: the table's "action" column.
func onfailAction(p config.OnFail) string { return hook.Decide(p, true, true).String() }
