package hook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/snapshot"
	"golang.org/x/sys/unix"
)

// freshCalls are the calls only a fresh layer makes.
var freshCalls = []string{"store", "resolve", "freespace", "prepare", "apply", "commit", "abort"}

func (w *world) noFreshLayer(t *testing.T) {
	t.Helper()
	for _, c := range freshCalls {
		if w.hasPrefix(c) {
			t.Errorf("an existing layer boots as it was left, but the boot called %q:\n%s", c, strings.Join(w.calls, "\n"))
		}
	}
	if _, err := os.Stat(bootstate.Path(w.env.TopDir)); err == nil {
		t.Errorf("an existing layer was counted as a boot of the image")
	}
}

// dockroot.layer=previous and current boot an existing layer as it was
// left: no image, no snapshot, no rotation, no top layer.
func TestBootExistingLayer(t *testing.T) {
	const prevImage = "sha256:" + "11111111111111111111111111111111" + "11111111111111111111111111111111"
	for _, tc := range []struct {
		param, want, mode string
	}{
		{"dockroot.layer=previous", "rw.prev.1", "previous"},
		{"dockroot.layer=current", "rw", "current"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			// The boot menu's entry also passes docker_image=: it is ignored.
			w := newWorld(t, withParams(tc.param))
			tree(t, w.env.TopDir, "rw/", "rw.prev.1/", "rw.prev.2/")
			w.layerIDs = map[string]uint64{"rw": 270, "rw.prev.1": 265, "rw.prev.2": 260}
			w.layerImages = map[string]string{"rw.prev.1": prevImage}
			if err := Boot(w.env); err != nil {
				t.Fatalf("Boot: %v\n%s", err, w.log)
			}
			w.noFreshLayer(t)
			mount := fmt.Sprintf("mount /dev/vda /newroot btrfs subvol=%s,subvolid=%d,compress=zstd", tc.want, w.layerIDs[tc.want])
			if !w.has(mount) || !w.hasPrefix("switch_root") {
				t.Errorf("want %q, then switch_root:\n%s", mount, strings.Join(w.calls, "\n"))
			}
			r := w.record
			if r.LayerMode != tc.mode || r.Layer.Subvolume != tc.want || r.Layer.Fresh || r.Layer.SubvolID != w.layerIDs[tc.want] ||
				r.Layer.Image != w.layerImages[tc.want] || r.Layer.Reason != tc.param || r.ImageID != "" || r.Ref != "" ||
				r.Fallback != nil || r.BootCount != nil || r.Toplayer != nil {
				t.Errorf("record: mode %q, layer %+v, image %q %q, fallback %+v, boot count %+v, top layer %+v",
					r.LayerMode, r.Layer, r.Ref, r.ImageID, r.Fallback, r.BootCount, r.Toplayer)
			}
			for _, line := range []string{
				"NOTICE " + tc.param + ": booting " + tc.want + " as it was left",
				"[8/17] resolve the image: skipped: booting " + tc.want + " as it was left (" + tc.param + ")",
				"[11/17] find the top layer: skipped",
				"[12/17] create the rw layer: skipped",
				"[13/17] apply the top layer: skipped",
				"[14/17] commit the rw layer: skipped",
			} {
				if w.log.find(line) == "" {
					t.Errorf("log lacks %q:\n%s", line, w.log)
				}
			}
		})
	}
}

// A layer that is not there fails the boot with the layers that are, and
// what to boot instead.
func TestBootExistingLayerMissing(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		existing     []string
		want         []string
	}{
		{"no previous layer", "dockroot.layer=previous", []string{"rw/"},
			[]string{"rw.prev.1 does not exist on /dev/vda (LABEL=linux)", "the rw layers there are:\n  rw (subvolume 270", "boot without dockroot.layer=", "dockroot.layer=current"}},
		{"keep=0", "dockroot.layer=previous dockroot.keep=0", []string{"rw/"},
			[]string{"rw.prev.1 does not exist", "dockroot.keep=0 keeps no previous layer"}},
		{"no layers at all", "dockroot.layer=current", nil,
			[]string{"rw does not exist", "there are no rw layers rw* yet", "boot without dockroot.layer="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, withParams(tc.params+" dockroot.onfail=previous"))
			tree(t, w.env.TopDir, tc.existing...)
			w.layerIDs["rw"] = 270
			err := Boot(w.env)
			var be *BootError
			if !errors.As(err, &be) || be.Step != "layer" {
				t.Fatalf("Boot = %v, want a failure choosing the layer", err)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q:\n%v", s, err)
				}
			}
			w.noFreshLayer(t)
			if w.hasPrefix("mount /dev/vda /newroot") {
				t.Errorf("mounted a layer although the one asked for is missing: %v", w.calls)
			}
		})
	}
}

// Booting a layer as it was left needs no ownership record: when the
// layer list cannot be read, the layer is looked for directly.
func TestBootExistingLayerWithoutList(t *testing.T) {
	w := newWorld(t, withParams("dockroot.layer=previous"))
	tree(t, w.env.TopDir, "rw/", "rw.prev.1/")
	w.fail["list"] = errors.New("layers.json: unexpected end of JSON input")
	if err := Boot(w.env); err != nil {
		t.Fatalf("Boot: %v\n%s", err, w.log)
	}
	if !w.has("mount /dev/vda /newroot btrfs subvol=rw.prev.1,subvolid=300,compress=zstd") || w.record.Layer.SubvolID != 300 {
		t.Errorf("calls %v, record layer %+v", w.calls, w.record.Layer)
	}
	if w.log.find("WARN", "listing the rw layers", "looking for rw.prev.1 directly") == "" {
		t.Errorf("the unreadable list is not reported:\n%s", w.log)
	}
}

// The hibernation guard: a hibernation image on the resume device keeps
// the rw layer as the hibernated system left it, and the kernel is asked
// to resume before the btrfs filesystem is mounted.
func TestBootHibernationGuard(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		hibernated   string
		existing     []string
		findErr      error
		keep         bool // the existing layer boots
		tryResume    bool
	}{
		{"no image", "resume=LABEL=swap", "", []string{"rw/"}, nil, false, false},
		{"image", "resume=LABEL=swap", "S1SUSPEND", []string{"rw/"}, nil, true, true},
		{"image, noresume", "resume=LABEL=swap noresume", "S1SUSPEND", []string{"rw/"}, nil, true, false},
		{"image, no layer yet", "resume=LABEL=swap", "S1SUSPEND", nil, nil, false, true},
		{"resume device missing", "resume=LABEL=swap", "", []string{"rw/"}, errors.New("no device with LABEL=swap"), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, withParams(tc.params))
			tree(t, w.env.TopDir, tc.existing...)
			w.resumeDev, w.hibernated = "/dev/vdc", tc.hibernated
			if tc.findErr != nil {
				w.fail["find"] = tc.findErr
			}
			if err := Boot(w.env); err != nil {
				t.Fatalf("Boot: %v\n%s", err, w.log)
			}
			if !w.has("find LABEL=swap") {
				t.Errorf("resume= was not looked up: %v", w.calls)
			}
			if i, j := index(w.calls, "find LABEL=swap"), index(w.calls, "mount /dev/vda /run/dockroot/top btrfs subvolid=5,compress=zstd"); i < 0 || j < i {
				t.Errorf("the btrfs filesystem was mounted before the hibernation check:\n%s", strings.Join(w.calls, "\n"))
			}
			r := w.record
			if !tc.keep {
				if !w.has("commit") || r.LayerMode != "new" || !r.Layer.Fresh {
					t.Errorf("want a fresh layer: mode %q, layer %+v, calls %v", r.LayerMode, r.Layer, w.calls)
				}
				if tc.hibernated != "" && r.Hibernation == nil {
					t.Error("the hibernation image is not in the record")
				}
				return
			}
			w.noFreshLayer(t)
			if !w.has("mount /dev/vda /newroot btrfs subvol=rw,compress=zstd") {
				t.Errorf("the kept layer rw was not mounted:\n%s", strings.Join(w.calls, "\n"))
			}
			if r.LayerMode != "current" || r.Layer.Subvolume != "rw" || r.Layer.Fresh || r.Hibernation == nil ||
				!strings.Contains(r.Layer.Reason, "hibernation") {
				t.Errorf("record: mode %q, layer %+v, hibernation %+v", r.LayerMode, r.Layer, r.Hibernation)
			}
			// The fake device is no block device, so asking the kernel fails
			// and says why; with noresume the kernel is not asked at all.
			if tried := r.Hibernation.ResumeError != ""; tried != tc.tryResume {
				t.Errorf("resume tried = %v (%q), want %v", tried, r.Hibernation.ResumeError, tc.tryResume)
			}
			if w.log.find("ERR", "!!! hibernation") == "" || w.log.find("AS IT WAS LEFT") == "" && tc.findErr == nil {
				t.Errorf("keeping the layer is not loud:\n%s", w.log)
			}
		})
	}
}

func index(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// Boot counting: every boot of an image not marked good counts; after
// dockroot.tries= of them the last good image boots instead, loudly.
func TestBootCountFallsBackToLastGood(t *testing.T) {
	good := &snapshot.Image{Ref: "sha256:" + strings.Repeat("9", 64), ID: "sha256:" + strings.Repeat("9", 64),
		ChainID: "sha256:" + strings.Repeat("8", 64), Subvolume: "var/lib/docker/btrfs/subvolumes/good"}
	w := newWorld(t, withParams("dockroot.tries=2"))
	w.images[good.ID] = good
	// The top level as the init mounts it: where the state file lives.
	mustDo(t, os.MkdirAll(w.env.TopDir, 0o755))
	if _, err := bootstate.MarkGood(w.env.TopDir, bootstate.Image{ID: good.ID, Ref: "docker.io/library/good:1"}); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 3; attempt++ {
		w.calls = nil
		if err := Boot(w.env); err != nil {
			t.Fatalf("boot %d: %v\n%s", attempt, err, w.log)
		}
		bc := w.record.BootCount
		if bc == nil || bc.Tries != 2 || bc.LastGood == nil || bc.LastGood.ID != good.ID || bc.Requested.ID != w.image.ID {
			t.Fatalf("boot %d: boot count %+v", attempt, bc)
		}
		if attempt <= 2 {
			if bc.FellBack || bc.Attempt != attempt || w.record.ImageID != w.image.ID || !w.has("prepare rw keep=1 from var/lib/docker/btrfs/subvolumes/c1") {
				t.Errorf("boot %d: boot count %+v, image %s, calls %v", attempt, bc, w.record.ImageID, w.calls)
			}
			continue
		}
		if !bc.FellBack || !strings.Contains(bc.Message, "FALLING BACK") {
			t.Errorf("boot 3: boot count %+v, want a fallback", bc)
		}
		if !w.has("resolve "+good.ID) || !w.has("prepare rw keep=1 from "+good.Subvolume) {
			t.Errorf("boot 3 did not make the layer from the last good image:\n%s", strings.Join(w.calls, "\n"))
		}
		if r := w.record; r.ImageID != good.ID || r.Ref != "docker.io/library/good:1" || r.ImageSubvolume != good.Subvolume || !r.Layer.Fresh {
			t.Errorf("boot 3 record: %s %s %s %+v", r.Ref, r.ImageID, r.ImageSubvolume, r.Layer)
		}
		if w.log.find("ERR", "!!! FALLING BACK", "dockroot.tries=2") == "" || w.log.find("FELL BACK to the last good image docker.io/library/good:1") == "" {
			t.Errorf("the fallback is not loud:\n%s", w.log)
		}
	}
}

func TestBootCountEdges(t *testing.T) {
	t.Run("no last good image", func(t *testing.T) {
		w := newWorld(t, withParams("dockroot.tries=1"))
		for i := 0; i < 2; i++ {
			if err := Boot(w.env); err != nil {
				t.Fatalf("Boot: %v", err)
			}
		}
		if bc := w.record.BootCount; bc == nil || bc.FellBack || bc.Attempt != 2 || !strings.Contains(bc.Message, "nothing to fall back to") {
			t.Errorf("boot count %+v", bc)
		}
	})
	t.Run("last good image gone", func(t *testing.T) {
		w := newWorld(t, withParams("dockroot.tries=1"))
		gone := "sha256:" + strings.Repeat("7", 64)
		mustDo(t, os.MkdirAll(w.env.TopDir, 0o755))
		if _, err := bootstate.MarkGood(w.env.TopDir, bootstate.Image{ID: gone, Ref: "old:1"}); err != nil {
			t.Fatal(err)
		}
		w.fail["resolve "+gone] = &snapshot.NotFoundError{Ref: gone, Store: "the test store"}
		for i := 0; i < 2; i++ {
			if err := Boot(w.env); err != nil {
				t.Fatalf("Boot: %v\n%s", err, w.log)
			}
		}
		if bc := w.record.BootCount; bc == nil || bc.FellBack || w.record.ImageID != w.image.ID || !strings.Contains(bc.Message, "cannot be booted") {
			t.Errorf("boot count %+v, image %s", bc, w.record.ImageID)
		}
		if w.log.find("ERR", "cannot boot the last good image") == "" {
			t.Errorf("log:\n%s", w.log)
		}
	})
	t.Run("tries=0", func(t *testing.T) {
		w := newWorld(t, withParams("dockroot.tries=0"))
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v", err)
		}
		if w.record.BootCount != nil || w.log.find("count the boot (optional): skipped: dockroot.tries=0") == "" {
			t.Errorf("boot count %+v\n%s", w.record.BootCount, w.log)
		}
		if _, err := os.Stat(bootstate.Path(w.env.TopDir)); err == nil {
			t.Error("tries=0 wrote a state file")
		}
	})
	t.Run("corrupt state file", func(t *testing.T) {
		w := newWorld(t, baseCmdline)
		mustDo(t, os.MkdirAll(filepath.Dir(bootstate.Path(w.env.TopDir)), 0o755))
		mustDo(t, os.WriteFile(bootstate.Path(w.env.TopDir), []byte("{not json"), 0o644))
		if err := Boot(w.env); err != nil {
			t.Fatalf("a corrupt state file stopped the boot: %v", err)
		}
		if w.log.find("WARN", "count the boot (optional): failed after", "unreadable") == "" || !w.hasPrefix("switch_root") {
			t.Errorf("log:\n%s", w.log)
		}
	})
}

// The free-space check refuses a new layer on a nearly full filesystem
// before anything changes; onfail=previous then boots the existing layer.
func TestBootFreeSpace(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		w := newWorld(t, baseCmdline)
		w.space = freespace.Space{Free: 10 << 20, Total: 1 << 30, Btrfs: true}
		err := Boot(w.env)
		var be *BootError
		if !errors.As(err, &be) || be.Step != "free-space" || !errors.Is(err, freespace.ErrLowSpace) {
			t.Fatalf("Boot = %v, want a free-space failure", err)
		}
		if w.hasPrefix("prepare") || w.hasPrefix("abort") {
			t.Errorf("touched the layers on a full disk: %v", w.calls)
		}
	})
	t.Run("full, onfail=previous", func(t *testing.T) {
		w := newWorld(t, withParams("dockroot.onfail=previous"))
		tree(t, w.env.TopDir, "rw/")
		w.space = freespace.Space{Free: 10 << 20, Total: 1 << 30, Btrfs: true}
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v", err)
		}
		if w.hasPrefix("prepare") || !w.has("mount /dev/vda /newroot btrfs subvol=rw,compress=zstd") || w.record.Fallback == nil {
			t.Errorf("calls %v, fallback %+v", w.calls, w.record.Fallback)
		}
	})
	t.Run("low", func(t *testing.T) {
		w := newWorld(t, baseCmdline)
		w.space = freespace.Space{Free: 100 << 20, Total: 1 << 30, Btrfs: true}
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v", err)
		}
		if w.log.find("WARN", "has only 100 MiB free") == "" {
			t.Errorf("no warning:\n%s", w.log)
		}
	})
}

// ENOSPC in any step: what this boot made is removed, the message says
// what to do, and the onfail policy applies.
func TestBootNoSpace(t *testing.T) {
	for _, failAt := range []string{"prepare", "apply", "commit"} {
		t.Run(failAt, func(t *testing.T) {
			w := newWorld(t, withParams("dockroot.onfail=reboot"))
			w.fail[failAt] = fmt.Errorf("%s: %w", failAt, unix.ENOSPC)
			err := Boot(w.env)
			var be *BootError
			if !errors.As(err, &be) || be.OnFail != config.OnFailReboot || !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("Boot = %v, want a BootError with onfail reboot", err)
			}
			if !strings.Contains(err.Error(), "the filesystem is full") || !strings.Contains(err.Error(), "dockroot gc") {
				t.Errorf("error does not say what to do: %v", err)
			}
			if prepared := failAt != "prepare"; prepared != w.has("abort") {
				t.Errorf("abort called = %v, want %v: %v", w.has("abort"), prepared, w.calls)
			}
		})
	}
}
