package hook

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/dockroot/dockroot/config"
)

// mountsLeft returns the mounts of the calls that no later unmount undid.
func mountsLeft(calls []string) []string {
	var left []string
	for _, c := range calls {
		switch f := strings.Fields(c); {
		case f[0] == "mount":
			left = append(left, f[2])
		case f[0] == "umount":
			for i := len(left) - 1; i >= 0; i-- {
				if left[i] == f[1] {
					left = append(left[:i], left[i+1:]...)
					break
				}
			}
		}
	}
	return left
}

func TestPreparePlan(t *testing.T) {
	var names []string
	for _, st := range PreparePlan() {
		names = append(names, st.Name)
	}
	want := "pseudo-fs config root-device hibernation top-level layer image boot-count free-space top-layer-source rw-layer top-layer commit record release"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("PreparePlan =\n%s\nwant\n%s", got, want)
	}
	// The plan is a selection of the boot's own steps, not copies that
	// could drift: each shared step has the same description and flags.
	boot := map[string]Step{}
	for _, st := range Steps() {
		boot[st.Name] = st
	}
	for _, st := range PreparePlan() {
		b, ok := boot[st.Name]
		if st.Name == "release" {
			if ok {
				t.Errorf("the boot has a release step too")
			}
			continue
		}
		if !ok || b.Desc != st.Desc || b.Fresh != st.Fresh || b.Optional != st.Optional {
			t.Errorf("step %s differs from the boot's: %+v vs %+v", st.Name, st, b)
		}
	}
}

func TestPrepareSequence(t *testing.T) {
	w := newWorld(t, baseCmdline)
	res, err := Prepare(w.env)
	if err != nil || res != PrepareDone {
		t.Fatalf("Prepare = %v, %v\n%s", res, err, w.log)
	}
	want := []string{
		"cmdline", // namesNoImage
		"config",
		"pseudo",
		"cmdline",
		"config",
		"wait root LABEL=linux",
		"mount /dev/vda /run/dockroot/top btrfs subvolid=5,compress=zstd",
		"store auto var/lib/docker",
		"resolve web:1",
		"freespace",
		"prepare rw keep=1 from var/lib/docker/btrfs/subvolumes/c1",
		"apply /run/dockroot/top/top -> /run/dockroot/top/rw.dockroot-tmp",
		"commit",
		"record /run/dockroot/boot.json",
		"umount /run/dockroot/top",
	}
	if got := strings.Join(w.calls, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\n\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if left := mountsLeft(w.calls); len(left) > 0 {
		t.Errorf("mounts left behind: %v", left)
	}
	for _, line := range []string{
		"[1/15] mount the pseudo filesystems: starting",
		"[13/15] commit the rw layer: done in ",
		"[14/15] record the boot: done in ",
		"[15/15] hand the root over to the distribution's initramfs: done in ",
		"the distribution's initramfs mounts rw, the fresh layer",
		"boot steps took ",
	} {
		if w.log.find(line) == "" {
			t.Errorf("log lacks %q:\n%s", line, w.log)
		}
	}
	r := w.record
	if r == nil {
		t.Fatal("no boot record")
	}
	if r.Layer.Subvolume != "rw" || !r.Layer.Fresh || r.Layer.SubvolID != 260 || r.ImageID != w.image.ID || r.LayerMode != "new" {
		t.Errorf("record = %+v", r)
	}
	if strings.Join(r.Init, " ") != "/sbin/init --log-level=info" || r.Toplayer == nil {
		t.Errorf("record init %q, top layer %+v", r.Init, r.Toplayer)
	}
	for _, s := range r.Steps {
		if s.Step == "modules" || s.Step == "new-root" || s.Step == "switch-root" {
			t.Errorf("hook mode ran %s", s.Step)
		}
	}
}

// A top layer on a device of its own is mounted and released too.
func TestPrepareReleasesToplayerDevice(t *testing.T) {
	w := newWorld(t, withParams("toplayer=LABEL=top"))
	if _, err := Prepare(w.env); err != nil {
		t.Fatalf("Prepare: %v\n%s", err, w.log)
	}
	if !w.has("umount /run/dockroot/toplayer") || !w.has("umount /run/dockroot/top") {
		t.Errorf("calls %q", w.calls)
	}
	if left := mountsLeft(w.calls); len(left) > 0 {
		t.Errorf("mounts left behind: %v", left)
	}
}

// A failure leaves nothing mounted either, aborts the new layer, and says
// which step failed; nothing is committed.
func TestPrepareFailureReleases(t *testing.T) {
	for _, at := range []string{"resolve", "apply", "commit", "record"} {
		t.Run(at, func(t *testing.T) {
			w := newWorld(t, baseCmdline)
			w.fail[at] = errors.New("injected")
			res, err := Prepare(w.env)
			var be *BootError
			if res != PrepareFailed || !errors.As(err, &be) {
				t.Fatalf("Prepare = %v, %v", res, err)
			}
			if be.OnFail != config.OnFailShell {
				t.Errorf("policy %s", be.OnFail)
			}
			if left := mountsLeft(w.calls); len(left) > 0 {
				t.Errorf("mounts left behind: %v (calls %q)", left, w.calls)
			}
			if at == "apply" && !w.has("abort") {
				t.Errorf("the new layer was not aborted: %q", w.calls)
			}
		})
	}
}

// No image named anywhere: nothing runs, one line says so.
func TestPrepareNothingToDo(t *testing.T) {
	for _, cmdline := range []string{
		"root=UUID=1234 ro quiet",
		"root=LABEL=linux rootflags=subvol=@ rw",
		"root=LABEL=linux rootflags=subvol=docker_rwlayer rw docker_path=docker toplayer_path=boot_docker",
	} {
		w := newWorld(t, cmdline)
		res, err := Prepare(w.env)
		if err != nil || res != PrepareNothing {
			t.Errorf("%s: Prepare = %v, %v\n%s", cmdline, res, err, w.log)
			continue
		}
		if strings.Join(w.calls, " ") != "cmdline config" {
			t.Errorf("%s: calls %q", cmdline, w.calls)
		}
		if n := len(strings.Split(w.log.String(), "\n")); n != 1 || w.log.find("nothing to do: no docker_image=") == "" {
			t.Errorf("%s: want one line saying nothing to do:\n%s", cmdline, w.log)
		}
		if w.record != nil {
			t.Errorf("%s: a boot record was written", cmdline)
		}
	}
}

// An image named by a baked file, dockroot.layer=, an empty docker_image=
// or a broken file all run the plan (and the latter two fail there).
func TestPrepareSomethingToDo(t *testing.T) {
	const plain = "root=LABEL=linux rootflags=subvol=docker_rwlayer rw docker_path=docker toplayer_path=boot_docker"
	for _, tc := range []struct {
		cmdline string
		files   fstest.MapFS
		fails   bool
	}{
		{plain, fstest.MapFS{"etc/docker-btrfs.json": {Data: []byte(`{"docker_image": "desk", "docker_tag": "1"}`)}}, false},
		{plain, fstest.MapFS{"etc/dockroot.json": {Data: []byte(`{"docker_image": "desk:1"}`)}}, false},
		{plain + " docker_image=", nil, true},
		{plain, fstest.MapFS{"etc/dockroot.json": {Data: []byte(`{"docker_image": `)}}, true},
	} {
		w := newWorld(t, tc.cmdline)
		files := tc.files
		w.fx.loadConfig = func(c string) (*config.Config, error) { return config.Load(c, files) }
		res, err := Prepare(w.env)
		if tc.fails != (err != nil) || res == PrepareNothing {
			t.Errorf("%s %v: Prepare = %v, %v\n%s", tc.cmdline, files, res, err, w.log)
		}
	}
}

// dockroot.layer=current: NAME boots as it was left, nothing is made or
// committed. dockroot.layer=previous cannot be honoured: the generator
// mounts NAME.
func TestPrepareExistingLayer(t *testing.T) {
	w := newWorld(t, withParams("dockroot.layer=current"))
	tree(t, w.env.TopDir, "rw/", "rw.prev.1/")
	res, err := Prepare(w.env)
	if err != nil || res != PrepareDone {
		t.Fatalf("Prepare = %v, %v\n%s", res, err, w.log)
	}
	if w.hasPrefix("prepare") || w.has("commit") || w.record == nil || w.record.LayerMode != "current" {
		t.Errorf("calls %q, record %+v", w.calls, w.record)
	}

	w = newWorld(t, withParams("dockroot.layer=previous"))
	tree(t, w.env.TopDir, "rw/", "rw.prev.1/")
	_, err = Prepare(w.env)
	var he *HookLayerError
	if !errors.As(err, &he) || he.Want != "rw.prev.1" {
		t.Fatalf("Prepare = %v, want a HookLayerError", err)
	}
	if left := mountsLeft(w.calls); len(left) > 0 {
		t.Errorf("mounts left behind: %v", left)
	}
}

// With a generator that mounts what dockroot says (RootflagsFile, the
// initramfs-tools script), dockroot.layer=previous boots NAME.prev.1: the
// file names it with its subvolume ID and the command line's other
// rootflags=; a fresh layer is named with the ID just committed.
func TestPrepareRootflagsFile(t *testing.T) {
	for _, tc := range []struct {
		params string
		tree   []string
		want   string
		mode   string
	}{
		{"", []string{"rw/", "rw.prev.1/"}, "subvol=rw,subvolid=260,compress=zstd\n", "new"},
		{"dockroot.layer=previous", []string{"rw/", "rw.prev.1/"}, "subvol=rw.prev.1,compress=zstd\n", "previous"},
		{"dockroot.layer=current", []string{"rw/", "rw.prev.1/"}, "subvol=rw,compress=zstd\n", "current"},
	} {
		w := newWorld(t, withParams(tc.params))
		tree(t, w.env.TopDir, tc.tree...)
		w.env.RootflagsFile = filepath.Join(t.TempDir(), "run", "rootflags")
		res, err := Prepare(w.env)
		if err != nil || res != PrepareDone {
			t.Fatalf("%s: Prepare = %v, %v\n%s", tc.params, res, err, w.log)
		}
		b, err := os.ReadFile(w.env.RootflagsFile)
		if err != nil || string(b) != tc.want {
			t.Errorf("%s: rootflags file %q (%v), want %q", tc.params, b, err, tc.want)
		}
		if w.record == nil || w.record.LayerMode != tc.mode {
			t.Errorf("%s: record %+v, want layer mode %s", tc.params, w.record, tc.mode)
		}
		if left := mountsLeft(w.calls); len(left) > 0 {
			t.Errorf("%s: mounts left behind: %v", tc.params, left)
		}
	}
	// dockroot.onfail=previous with no NAME: NAME.prev.1, nothing committed.
	w := newWorld(t, withParams("dockroot.onfail=previous"))
	tree(t, w.env.TopDir, "rw.prev.1/")
	w.fail["resolve"] = errors.New("no such image")
	w.env.RootflagsFile = filepath.Join(t.TempDir(), "rootflags")
	if res, err := Prepare(w.env); err != nil || res != PrepareDone {
		t.Fatalf("onfail=previous: Prepare = %v, %v\n%s", res, err, w.log)
	}
	if b, _ := os.ReadFile(w.env.RootflagsFile); string(b) != "subvol=rw.prev.1,compress=zstd\n" || w.has("commit") {
		t.Errorf("onfail=previous: rootflags %q, calls %q", b, w.calls)
	}
}

func TestHookRootflags(t *testing.T) {
	for _, tc := range []struct {
		subvol string
		id     uint64
		rest   []string
		want   string
		ok     bool
	}{
		{"docker_rwlayer", 0, nil, "subvol=docker_rwlayer", true},
		{"docker_rwlayer.prev.1", 257, nil, "subvol=docker_rwlayer.prev.1,subvolid=257", true},
		{"@/rw", 300, []string{"compress=zstd:3", " noatime", ""}, "subvol=@/rw,subvolid=300,compress=zstd:3,noatime", true},
		{"rw", 0, []string{"ro"}, "subvol=rw,ro", true},
		{"rw", 0, []string{"x'y"}, "", false},
		{"r w", 0, nil, "", false},
		{"rw", 0, []string{"a;reboot"}, "", false},
		{"rw", 0, []string{"$(reboot)"}, "", false},
	} {
		got, err := HookRootflags(tc.subvol, tc.id, tc.rest)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("HookRootflags(%q, %d, %q) = %q, %v; want %q, ok=%v", tc.subvol, tc.id, tc.rest, got, err, tc.want, tc.ok)
		}
	}
}

// dockroot.onfail=previous: a failure before the commit commits nothing,
// NAME boots as it was left, the record says why, and nothing is mounted
// on the new root.
func TestPrepareFallbackToPrevious(t *testing.T) {
	w := newWorld(t, withParams("dockroot.onfail=previous"))
	tree(t, w.env.TopDir, "rw/")
	w.fail["resolve"] = errors.New("no such image")
	res, err := Prepare(w.env)
	if err != nil || res != PrepareDone {
		t.Fatalf("Prepare = %v, %v\n%s", res, err, w.log)
	}
	if w.has("commit") || w.hasPrefix("mount /dev/vda /newroot") {
		t.Errorf("calls %q", w.calls)
	}
	if left := mountsLeft(w.calls); len(left) > 0 {
		t.Errorf("mounts left behind: %v", left)
	}
	r := w.record
	if r == nil || r.Fallback == nil || r.Fallback.Layer != "rw" || r.Layer.Subvolume != "rw" || r.Layer.Fresh {
		t.Errorf("record = %+v", r)
	}
}
