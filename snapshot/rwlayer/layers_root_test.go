package rwlayer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
)

const testImageSubvol = "var/lib/docker/btrfs/subvolumes/0123abcd"

// newLayerFS makes a loop btrfs whose Docker data root holds one image
// subvolume with a few files, and returns Layers for name on it.
func newLayerFS(t testing.TB, name string, keep int) (*testenv.Btrfs, *Layers) {
	t.Helper()
	testenv.RequireRoot(t, "btrfs")
	fs := testenv.NewBtrfs(t, 512, "")
	img := filepath.Join(fs.Mnt, testImageSubvol)
	if err := os.MkdirAll(filepath.Dir(img), 0o700); err != nil {
		t.Fatal(err)
	}
	testenv.Subvolume(t, img)
	for rel, content := range map[string]string{"etc/hostname": "image\n", "etc/os-release": "ID=test\n", "sbin/init": "#!/bin/sh\n"} {
		putFile(t, filepath.Join(img, rel), content)
	}
	return fs, &Layers{Top: fs.Mnt, Name: name, Keep: keep, Log: t.Logf}
}

func putFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// boot runs one boot's worth of the lifecycle: prepare, "apply the top
// layer" (a file naming the boot), commit, then "run" (a file written into
// the live layer).
func boot(t testing.TB, l *Layers, n int) *CreateResult {
	t.Helper()
	p, err := l.Prepare(testImageSubvol)
	if err != nil {
		t.Fatalf("boot %d: Prepare: %v", n, err)
	}
	putFile(t, filepath.Join(p.Path(), "boot"), strconv.Itoa(n))
	res, err := p.Commit()
	if err != nil {
		t.Fatalf("boot %d: Commit: %v", n, err)
	}
	if len(res.Warnings) > 0 {
		t.Fatalf("boot %d: warnings %v", n, res.Warnings)
	}
	putFile(t, filepath.Join(res.Path, "ran"), strconv.Itoa(n))
	return res
}

// subvolumeIDs is the set of IDs `btrfs subvolume list` shows.
func subvolumeIDs(t testing.TB, mnt string) map[uint64]bool {
	t.Helper()
	ids := map[uint64]bool{}
	for _, line := range strings.Split(testenv.Run(t, "btrfs", "subvolume", "list", mnt), "\n") {
		var id uint64
		if _, err := fmt.Sscanf(line, "ID %d ", &id); err == nil {
			ids[id] = true
		}
	}
	return ids
}

// subvolumePaths is `btrfs subvolume list`, the reference for what exists.
func subvolumePaths(t testing.TB, mnt string) []string {
	t.Helper()
	var paths []string
	for _, line := range strings.Split(testenv.Run(t, "btrfs", "subvolume", "list", mnt), "\n") {
		if i := strings.Index(line, " path "); i >= 0 {
			paths = append(paths, line[i+len(" path "):])
		}
	}
	sort.Strings(paths)
	return paths
}

// checkLayers asserts that exactly NAME and NAME.prev.1..len(boots)-1
// exist, holding boots[i] (current first), that nothing else is left
// beside the image, and that the state file records every one of them by
// ID and UUID, the previous ones as having been live. The file may lag
// the names by one Commit (paths, the live flag of the current layer, a
// layer Commit deleted: see layers_durability.go), never the identities,
// and no intent marker is left.
func checkLayers(t testing.TB, fs *testenv.Btrfs, l *Layers, boots []int) {
	t.Helper()
	checkLayersFailed(t, fs, l, boots, 0)
}

// checkLayersFailed is checkLayers with NAME.failed holding boot failed
// too (0: no NAME.failed).
func checkLayersFailed(t testing.TB, fs *testenv.Btrfs, l *Layers, boots []int, failed int) {
	t.Helper()
	want := []string{testImageSubvol}
	names := make([]string, len(boots))
	for i := range boots {
		names[i] = l.Name
		if i > 0 {
			names[i] = l.PrevName(i)
		}
	}
	if failed != 0 {
		boots = append(append([]int(nil), boots...), failed)
		names = append(names, l.Name+failedSuffix)
	}
	for i, b := range boots {
		name := names[i]
		want = append(want, name)
		dir := filepath.Join(fs.Mnt, name)
		if got := readFile(t, filepath.Join(dir, "boot")); got != strconv.Itoa(b) {
			t.Errorf("%s holds boot %s, want %d", name, got, b)
		}
		if got := readFile(t, filepath.Join(dir, "etc/hostname")); got != "image\n" {
			t.Errorf("%s/etc/hostname = %q, want the image's", name, got)
		}
		if i > 0 {
			// What the system wrote while this layer was live survived.
			if got := readFile(t, filepath.Join(dir, "ran")); got != strconv.Itoa(b) {
				t.Errorf("%s/ran = %s, want %d", name, got, b)
			}
		}
	}
	sort.Strings(want)
	if got := subvolumePaths(t, fs.Mnt); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("btrfs subvolume list:\n got  %v\n want %v", got, want)
	}
	list, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(boots) {
		t.Fatalf("List() = %+v, want %d layers", list, len(boots))
	}
	st, err := loadLayerState(filepath.Join(fs.Mnt, layout.StateDir, LayerStateFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Intents) != 0 {
		t.Errorf("state intents %+v, want none", st.Intents)
	}
	if marks, _ := filepath.Glob(filepath.Join(fs.Mnt, layout.StateDir, intentPrefix+"*")); len(marks) != 0 {
		t.Errorf("intent markers left: %v", marks)
	}
	listed := map[uint64]bool{}
	for i, li := range list {
		id, err := btrfs.SubvolID(li.Path)
		index, isFailed := i, failed != 0 && i == len(list)-1
		if isFailed {
			index = IndexFailed
		}
		if li.Index != index || li.Failed != isFailed || li.Name != names[i] || !li.Owned || err != nil || id != li.SubvolID || li.Source != testImageSubvol {
			t.Errorf("List()[%d] = %+v (subvolume id %d, %v)", i, li, id, err)
		}
		listed[li.SubvolID] = true
		if r := st.owner(li.SubvolID, li.UUID); r == nil || (i > 0 && !r.Live) {
			t.Errorf("state record for %s = %+v", li.Name, r)
		}
	}
	existing := subvolumeIDs(t, fs.Mnt)
	for _, r := range st.Layers {
		if !listed[r.ID] && existing[r.ID] {
			t.Errorf("state records subvolume %d (%s), which exists but is not a layer", r.ID, r.Path)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(fs.Mnt, filepath.Dir(l.Name)))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			t.Errorf("leaked temporary layer %s", e.Name())
		}
	}
}

func TestLayersRotateAcrossBoots(t *testing.T) {
	for _, keep := range []int{0, 1, 3} {
		t.Run(fmt.Sprintf("keep=%d", keep), func(t *testing.T) {
			fs, l := newLayerFS(t, "@/docker_rwlayer", keep)
			for n := 1; n <= keep+3; n++ {
				res := boot(t, l, n)
				if res.Path != filepath.Join(fs.Mnt, "@/docker_rwlayer") {
					t.Errorf("boot %d: Path = %s", n, res.Path)
				}
				if id, _ := btrfs.SubvolID(res.Path); id != res.SubvolID {
					t.Errorf("boot %d: SubvolID %d, NAME is %d", n, res.SubvolID, id)
				}
				var boots []int
				for b := n; b >= 1 && len(boots) <= keep; b-- {
					boots = append(boots, b)
				}
				checkLayers(t, fs, l, boots)
				if n > keep+1 && len(res.Deleted) != 1 {
					t.Errorf("boot %d: Deleted = %v, want the oldest layer", n, res.Deleted)
				}
				if n > 1 && keep > 0 && (len(res.Rotated) == 0 || res.Rotated[len(res.Rotated)-1] != "@/docker_rwlayer -> @/docker_rwlayer.prev.1") {
					t.Errorf("boot %d: Rotated = %v", n, res.Rotated)
				}
			}
		})
	}
}

func TestLayersDeleteNestedSubvolumes(t *testing.T) {
	fs, l := newLayerFS(t, "rw", 1)
	boot(t, l, 1)
	live := filepath.Join(fs.Mnt, "rw")
	// What systemd and Docker do inside a running root.
	for _, p := range []string{"var/lib/machines", "var/lib/machines/inner", "var/lib/portables", "var/lib/docker/btrfs/subvolumes/x"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(live, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		testenv.Subvolume(t, filepath.Join(live, p))
	}
	putFile(t, filepath.Join(live, "var/lib/machines/inner/f"), "x")
	boot(t, l, 2) // rw with nested subvolumes becomes rw.prev.1
	if kids, err := btrfs.ListChildren(filepath.Join(fs.Mnt, "rw.prev.1")); err != nil || len(kids) != 3 {
		t.Fatalf("rw.prev.1 children = %+v, %v", kids, err)
	}
	boot(t, l, 3) // and is deleted with everything inside
	checkLayers(t, fs, l, []int{3, 2})
}

func TestLayersRefuseWhatTheyDidNotCreate(t *testing.T) {
	fs, l := newLayerFS(t, "rw", 1)
	top := fs.Mnt
	noTmp := func() {
		t.Helper()
		if _, err := os.Lstat(filepath.Join(top, "rw"+tmpSuffix)); !os.IsNotExist(err) {
			t.Errorf("refusal left a temporary layer: %v", err)
		}
	}

	// NAME is the user's own subvolume, then a plain directory.
	testenv.Subvolume(t, filepath.Join(top, "rw"))
	putFile(t, filepath.Join(top, "rw/mine"), "keep me")
	_, err := l.Create(testImageSubvol)
	var ne *NotOwnedError
	if !errors.As(err, &ne) || !strings.Contains(err.Error(), "subvolume") || !strings.Contains(err.Error(), "mv "+filepath.Join(top, "rw")) {
		t.Fatalf("Create over the user's subvolume: %v", err)
	}
	noTmp()
	testenv.Run(t, "btrfs", "subvolume", "delete", filepath.Join(top, "rw"))
	putFile(t, filepath.Join(top, "rw/mine"), "keep me")
	if _, err := l.Create(testImageSubvol); !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), "a plain directory") {
		t.Fatalf("Create over a plain directory: %v", err)
	}
	noTmp()
	if got := readFile(t, filepath.Join(top, "rw/mine")); got != "keep me" {
		t.Errorf("user's file = %q", got)
	}
	os.RemoveAll(filepath.Join(top, "rw"))

	// A previous-layer name or the temporary name holding the user's subvolume.
	for _, name := range []string{"rw.prev.2", "rw" + tmpSuffix} {
		boot(t, l, 1)
		testenv.Subvolume(t, filepath.Join(top, name))
		if _, err := l.Prepare(testImageSubvol); !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), name) {
			t.Errorf("Prepare with unowned %s: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(top, name)); err != nil {
			t.Errorf("unowned %s gone: %v", name, err)
		}
		testenv.Run(t, "btrfs", "subvolume", "delete", filepath.Join(top, name))
	}

	// DeleteSubvolume refuses the top level, the Docker data root, unowned
	// subvolumes and paths through symlinks; it deletes an owned layer.
	testenv.Subvolume(t, filepath.Join(top, "other"))
	if err := os.Symlink("rw.prev.1", filepath.Join(top, "link")); err != nil {
		t.Fatal(err)
	}
	boot(t, l, 2)
	for rel, want := range map[string]string{
		"":                       "top level",
		".":                      "top level",
		"var/lib/docker":         "Docker data root",
		testImageSubvol:          "Docker data root",
		"other":                  "did not create",
		"link":                   "symlink",
		"var/lib/../lib/docker/": "Docker data root",
	} {
		err := l.DeleteSubvolume(rel)
		if !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), want) {
			t.Errorf("DeleteSubvolume(%q) = %v, want refusal mentioning %q", rel, err, want)
		}
	}
	before := subvolumePaths(t, top)
	if err := l.DeleteSubvolume("rw.prev.1"); err != nil {
		t.Fatal(err)
	}
	after := subvolumePaths(t, top)
	if len(after) != len(before)-1 {
		t.Errorf("DeleteSubvolume(rw.prev.1): %v -> %v", before, after)
	}
	if list, _ := l.List(); len(list) != 1 {
		t.Errorf("List after delete = %+v", list)
	}
}

func TestLayersRequireTopLevel(t *testing.T) {
	fs, _ := newLayerFS(t, "rw", 1)
	testenv.Subvolume(t, filepath.Join(fs.Mnt, "@"))
	mnt := t.TempDir()
	testenv.Run(t, "mount", "-o", "subvol=@", fs.Loop, mnt)
	t.Cleanup(func() { testenv.Unmount(t, mnt) })
	l := &Layers{Top: mnt, Name: "rw", Keep: 1}
	if _, err := l.Prepare(testImageSubvol); err == nil || !strings.Contains(err.Error(), "subvolid=5") {
		t.Errorf("Prepare on a non-top-level mount: %v", err)
	}
}

func TestLayersAbort(t *testing.T) {
	fs, l := newLayerFS(t, "rw", 1)
	boot(t, l, 1)
	p, err := l.Prepare(testImageSubvol)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Abort(); err != nil {
		t.Fatal(err)
	}
	checkLayers(t, fs, l, []int{1})
	if _, err := p.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	// Abort after Commit deletes nothing.
	p, err = l.Prepare(testImageSubvol)
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, filepath.Join(p.Path(), "boot"), "2")
	if _, err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	putFile(t, filepath.Join(fs.Mnt, "rw/ran"), "2")
	if err := p.Abort(); err != nil {
		t.Fatal(err)
	}
	checkLayers(t, fs, l, []int{2, 1})
}

// TestLayersListUnfinished: a layer a boot prepared and never committed or
// aborted (a power cut in between) is listed, so `dockroot gc` shows it
// (issue 17 item 13); the next Prepare cleans it up as before.
func TestLayersListUnfinished(t *testing.T) {
	fs, l := newLayerFS(t, "rw", 1)
	boot(t, l, 1)
	p, err := l.Prepare(testImageSubvol)
	if err != nil {
		t.Fatal(err)
	}
	all, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	var tmp *LayerInfo
	for i := range all {
		if all[i].Tmp {
			tmp = &all[i]
		}
	}
	if tmp == nil || tmp.Path != p.Path() || tmp.Index != IndexTmp || tmp.Live || tmp.SubvolID == 0 {
		t.Fatalf("List = %+v, want the unfinished %s listed as Tmp", all, p.Path())
	}
	t.Logf("unfinished layer: %+v", *tmp)
	boot(t, l, 2)
	checkLayers(t, fs, l, []int{2, 1})
}

func TestLayersCorruptStateRefuses(t *testing.T) {
	fs, l := newLayerFS(t, "rw", 1)
	boot(t, l, 1)
	before := subvolumePaths(t, fs.Mnt)
	// Both the state file and its backup: with a good backup the boot
	// recovers (TestLayersCorruptStateRecoversFromBackup).
	putFile(t, filepath.Join(fs.Mnt, layout.StateDir, LayerStateFile), `{"version":1,"layers":[`)
	putFile(t, filepath.Join(fs.Mnt, layout.StateDir, LayerStateFile+layerStateBackupSuffix), `garbage`)
	if _, err := l.Create(testImageSubvol); !errors.Is(err, ErrCorruptState) {
		t.Errorf("Create with a corrupt state file and backup: %v", err)
	}
	if after := subvolumePaths(t, fs.Mnt); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("subvolumes changed: %v -> %v", before, after)
	}
}

// TestLayersCorruptStateRecoversFromBackup: a corrupt layers.json no
// longer stops every boot: the layers are proven by layers.json.bak, the
// log says so, and the rotation goes on as usual.
func TestLayersCorruptStateRecoversFromBackup(t *testing.T) {
	fs, l := newLayerFS(t, "rw", 1)
	var logs []string
	l.Log = func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)); t.Logf(f, a...) }
	boot(t, l, 1)
	boot(t, l, 2)
	state := filepath.Join(fs.Mnt, layout.StateDir, LayerStateFile)
	putFile(t, state, `{"version":1,"layers":[`)
	boot(t, l, 3)
	checkLayers(t, fs, l, []int{3, 2})
	if msg := strings.Join(logs, "\n"); !strings.Contains(msg, state+layerStateBackupSuffix) {
		t.Errorf("no warning about using the backup:\n%s", msg)
	}
}

func TestLayersReadOnlyFilesystem(t *testing.T) {
	fs, l := newLayerFS(t, "rw", 1)
	boot(t, l, 1)
	testenv.Run(t, "mount", "-o", "remount,ro", fs.Mnt)
	_, err := l.Create(testImageSubvol)
	var oe *OpError
	if !errors.Is(err, syscall.EROFS) || !errors.As(err, &oe) || !strings.HasPrefix(oe.Path, fs.Mnt) {
		t.Errorf("Create on a read-only filesystem: %v", err)
	}
	testenv.Run(t, "mount", "-o", "remount,rw", fs.Mnt)
	checkLayers(t, fs, l, []int{1})
}

var errCrash = errors.New("simulated power cut")

// TestLayersCrashAtEveryPoint stops Prepare or Commit at each of their
// named points in turn, as a power cut would (no cleanup), checks that
// NAME holds a complete layer, and then boots normally: the next boot must
// succeed and leave exactly keep+1 layers and nothing leaked.
func TestLayersCrashAtEveryPoint(t *testing.T) {
	const keep = 2
	fs, l := newLayerFS(t, "@/rw", keep)
	for n := 1; n <= 3; n++ {
		boot(t, l, n)
	}
	history := []int{3, 2, 1} // boot numbers, current first
	next := 4
	var points []string
	for k := 0; ; k++ {
		calls := 0
		crashed := ""
		l.hook = func(point string) error {
			if strings.HasPrefix(point, "recover") {
				return nil
			}
			if calls++; calls-1 == k {
				crashed = point
				return errCrash
			}
			return nil
		}
		crashBoot := next
		next++
		p, err := l.Prepare(testImageSubvol)
		if err == nil {
			putFile(t, filepath.Join(p.Path(), "boot"), strconv.Itoa(crashBoot))
			_, err = p.Commit()
		}
		l.hook = nil
		if crashed == "" {
			if err != nil {
				t.Fatal(err)
			}
			break // no point left to crash at
		}
		if !errors.Is(err, errCrash) {
			t.Fatalf("crash at %q: error %v", crashed, err)
		}
		points = append(points, crashed)

		// NAME is complete: the old layer or the new one.
		cur := readFile(t, filepath.Join(fs.Mnt, "@/rw/boot"))
		wentLive := cur == strconv.Itoa(crashBoot)
		if !wentLive && cur != strconv.Itoa(history[0]) {
			t.Fatalf("crash at %q: @/rw holds boot %s, want %d or %d", crashed, cur, history[0], crashBoot)
		}
		if wentLive {
			history = append([]int{crashBoot}, history...)
			putFile(t, filepath.Join(fs.Mnt, "@/rw/ran"), strconv.Itoa(crashBoot))
		}

		n := next
		next++
		boot(t, l, n)
		history = append([]int{n}, history...)[:keep+1]
		checkLayers(t, fs, l, history)
		if t.Failed() {
			t.Fatalf("after crash at %q", crashed)
		}
	}
	for _, want := range []string{"prepare: intent recorded", "prepare: snapshot made", "commit: exchange rw.dockroot-tmp rw", "commit: delete rw.prev.2", "commit: rename rw.dockroot-tmp rw.prev.1", "commit: rotated"} {
		found := false
		for _, p := range points {
			found = found || strings.HasPrefix(p, want)
		}
		if !found {
			t.Errorf("no crash injected at %q; points: %v", want, points)
		}
	}
	t.Logf("crashed at %d points: %v", len(points), points)
}

// BenchmarkDeleteLayer deletes a layer made from an image of 1k and 20k
// files, holding two nested subvolumes, through the owned-delete path
// (ownership checks, tree search, SNAP_DESTROY). ns/op should not grow
// with the file count. The sync that follows a deletion is left out of
// the timing: it waits for whatever the filesystem has in flight. The
// "walk" case times what a file walk like containerd/btrfs's SubvolDelete
// would add, for contrast.
func BenchmarkDeleteLayer(b *testing.B) {
	for _, files := range []int{1000, 20000} {
		fs, l := newLayerFS(b, "rw", 0)
		img := filepath.Join(fs.Mnt, testImageSubvol)
		for i := 0; i < files; i++ {
			putFile(b, filepath.Join(img, "usr/share", strconv.Itoa(i/500), strconv.Itoa(i)), "x")
		}
		l.Log = nil
		prepare := func(b *testing.B) *Pending {
			b.Helper()
			p, err := l.Prepare(testImageSubvol)
			if err != nil {
				b.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(p.Path(), "var/lib"), 0o755); err != nil {
				b.Fatal(err)
			}
			for _, n := range []string{"var/lib/machines", "var/lib/machines/inner"} {
				if err := btrfs.CreateSubvolume(filepath.Join(p.Path(), n)); err != nil {
					b.Fatal(err)
				}
			}
			if err := btrfs.Sync(fs.Mnt); err != nil {
				b.Fatal(err)
			}
			return p
		}
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			c, err := l.open()
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				p := prepare(b)
				st, err := loadLayerState(c.statePath, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := c.deleteOwned(st, p.rel); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := c.settle(st); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
		b.Run(fmt.Sprintf("walk/files=%d", files), func(b *testing.B) {
			p := prepare(b)
			defer p.Abort()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n := 0
				filepath.WalkDir(p.Path(), func(string, os.DirEntry, error) error { n++; return nil })
				if n < files {
					b.Fatalf("walked %d entries, want at least %d", n, files)
				}
			}
		})
	}
}

// TestLayersIntentProvesOwnership: a snapshot left under the temporary
// name by a boot that stopped before recording it is dockroot's only if an
// intent marker (or, from an older dockroot, an intent in the state file)
// names that path and the snapshot's source.
func TestLayersIntentProvesOwnership(t *testing.T) {
	fs, l := newLayerFS(t, "rw", 1)
	top := fs.Mnt
	boot(t, l, 1)
	tmp := filepath.Join(top, "rw"+tmpSuffix)
	statePath := filepath.Join(top, layout.StateDir, LayerStateFile)
	marks := func() []string {
		m, _ := filepath.Glob(filepath.Join(top, layout.StateDir, intentPrefix+"*"))
		return m
	}
	stopAfterSnapshot := func() {
		t.Helper()
		l.hook = func(point string) error {
			if point == "prepare: snapshot made" {
				return errCrash
			}
			return nil
		}
		defer func() { l.hook = nil }()
		if _, err := l.Prepare(testImageSubvol); !errors.Is(err, errCrash) {
			t.Fatalf("Prepare stopped after the snapshot: %v", err)
		}
		if ok, _ := btrfs.IsSubvolume(tmp); !ok {
			t.Fatal("no snapshot under the temporary name")
		}
	}

	t.Run("a marker proves it", func(t *testing.T) {
		stopAfterSnapshot()
		if got := marks(); len(got) != 1 {
			t.Fatalf("intent markers = %v, want one", got)
		}
		boot(t, l, 2)
		checkLayers(t, fs, l, []int{2, 1})
	})
	t.Run("an older dockroot's intent in the state file proves it", func(t *testing.T) {
		stopAfterSnapshot()
		m := marks()
		if len(m) != 1 {
			t.Fatalf("intent markers = %v, want one", m)
		}
		src := strings.TrimPrefix(filepath.Base(m[0]), intentKey("rw"+tmpSuffix))
		if err := os.Remove(m[0]); err != nil {
			t.Fatal(err)
		}
		st, err := loadLayerState(statePath, nil)
		if err != nil {
			t.Fatal(err)
		}
		st.Intents = []layerIntent{{Path: "rw" + tmpSuffix, SourceUUID: src, Started: time.Now().UTC()}}
		if err := st.save(statePath); err != nil {
			t.Fatal(err)
		}
		boot(t, l, 3)
		checkLayers(t, fs, l, []int{3, 2})
	})
	for _, tc := range []struct{ name, marker string }{
		{"no marker", ""},
		{"a marker for another source", intentKey("rw"+tmpSuffix) + "00000000-0000-0000-0000-000000000001"},
		{"a marker for another name", intentKey("other"+tmpSuffix) + "SOURCE"},
	} {
		t.Run("refused with "+tc.name, func(t *testing.T) {
			// The user's own snapshot of the image, under our temporary name.
			testenv.Run(t, "btrfs", "subvolume", "snapshot", filepath.Join(top, testImageSubvol), tmp)
			info, err := btrfs.SubvolInfo(filepath.Join(top, testImageSubvol))
			if err != nil {
				t.Fatal(err)
			}
			if tc.marker != "" {
				putFile(t, filepath.Join(top, layout.StateDir, strings.Replace(tc.marker, "SOURCE", info.UUID.String(), 1)), "")
			}
			if _, err := l.Prepare(testImageSubvol); !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), tmp) {
				t.Errorf("Prepare over an unproven %s: %v, want a refusal naming it", tmp, err)
			}
			if ok, _ := btrfs.IsSubvolume(tmp); !ok {
				t.Errorf("unproven %s was deleted", tmp)
			}
			testenv.Run(t, "btrfs", "subvolume", "delete", tmp)
			for _, m := range marks() {
				os.Remove(m)
			}
		})
	}
}

// TestLayersStateStaysSmall: the state file lags the names by at most one
// Commit, so over many boots it records no more than the layers kept, the
// new one and what the last Commit deleted; and the lag shows in no log
// line twice.
func TestLayersStateStaysSmall(t *testing.T) {
	const keep = 1
	fs, l := newLayerFS(t, "rw", keep)
	var lines []string
	l.Log = func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	history := []int{}
	for n := 1; n <= 8; n++ {
		lines = nil
		boot(t, l, n)
		// The boot's console shows each line once (tests/vm checks the
		// same on a real console).
		seen := map[string]bool{}
		for _, line := range lines {
			if seen[line] {
				t.Errorf("boot %d logged %q twice:\n%s", n, line, strings.Join(lines, "\n"))
			}
			seen[line] = true
		}
		history = append([]int{n}, history...)
		if len(history) > keep+1 {
			history = history[:keep+1]
		}
		checkLayers(t, fs, l, history)
		st, err := loadLayerState(filepath.Join(fs.Mnt, layout.StateDir, LayerStateFile), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Layers) > keep+2 {
			t.Errorf("boot %d: state records %d layers, want at most %d: %+v", n, len(st.Layers), keep+2, st.Layers)
		}
	}
}
