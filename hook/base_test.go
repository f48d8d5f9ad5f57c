package hook

import (
	"errors"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/toplayer"
)

// fakeBases is a Bases whose answers the test sets; its calls go to
// the world's call log ("base key", "base find", "base save").
type fakeBases struct {
	w       *world
	keyErr  error
	found   string // the base Find reports, "" for none
	saveRel string // what Save returns as made
}

func (b *fakeBases) Key(top, layer string, img *snapshot.Image, src, desc string) (rwlayer.BaseKey, error) {
	if err := b.w.call("base key " + layer + " " + b.w.rel(src)); err != nil {
		return rwlayer.BaseKey{}, err
	}
	return rwlayer.BaseKey{Layer: layer, Ref: img.Ref, ImageID: img.ID, Toplayer: desc, Fingerprint: "fp"}, b.keyErr
}

func (b *fakeBases) Find(top string, k rwlayer.BaseKey) (string, bool) {
	b.w.call("base find")
	return b.found, b.found != ""
}

func (b *fakeBases) Save(top, from string, k rwlayer.BaseKey) (string, []string, error) {
	return b.saveRel, nil, b.w.call("base save " + b.w.rel(from))
}

// index is the position of the first call with prefix, -1 if none.
func (w *world) index(prefix string) int {
	for i, c := range w.calls {
		if strings.HasPrefix(c, prefix) {
			return i
		}
	}
	return -1
}

// TestBootPreparedBase: the boot's use of prepared bases, step by step.
func TestBootPreparedBase(t *testing.T) {
	const base = ".dockroot/bases/s-k"
	newBaseWorld := func(t *testing.T, cmdline string) (*world, *fakeBases) {
		w := newWorld(t, cmdline)
		b := &fakeBases{w: w, saveRel: base}
		w.env.Bases = b
		return w, b
	}

	t.Run("no base yet: copy, save before the commit", func(t *testing.T) {
		w, _ := newBaseWorld(t, baseCmdline)
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		prep, apply, save, commit := w.index("prepare rw keep=1 from var/lib/docker/btrfs/subvolumes/c1"), w.index("apply"), w.index("base save"), w.index("commit")
		if prep < 0 || apply < prep || save < apply || commit < save {
			t.Errorf("calls %v: want the image prepared, then the top layer applied, the base saved from the pending layer, and the commit", w.calls)
		}
		if got := w.callFor("base save"); got != "base save /run/dockroot/top/rw.dockroot-tmp" {
			t.Errorf("saved %q, want the pending layer", got)
		}
		if tl := w.record.Toplayer; tl == nil || tl.Reused || tl.Base != base || tl.Summary.Files != 2 {
			t.Errorf("boot.json top layer %+v, want copied with base %s", tl, base)
		}
	})
	t.Run("a matching base: the layer is made from it, nothing is copied", func(t *testing.T) {
		w, b := newBaseWorld(t, baseCmdline)
		b.found = base
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		if !w.has("prepare rw keep=1 from "+base) || w.hasPrefix("apply") || w.hasPrefix("base save") {
			t.Errorf("calls %v: want the layer prepared from %s, no copy, no save", w.calls, base)
		}
		if !w.pending.metadataOnly {
			t.Error("a layer made from a base wrote no data, but the commit was not told (MetadataOnly)")
		}
		if tl := w.record.Toplayer; tl == nil || !tl.Reused || tl.Base != base {
			t.Errorf("boot.json top layer %+v, want reused %s", tl, base)
		}
		if !strings.Contains(w.log.String(), "from the prepared base "+base) {
			t.Errorf("the log does not say where the layer came from:\n%s", w.log)
		}
	})
	t.Run("no fingerprint: copy in full, keep no base", func(t *testing.T) {
		w, b := newBaseWorld(t, baseCmdline)
		b.keyErr = toplayer.ErrNoChangeTime
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		if !w.hasPrefix("apply") || w.hasPrefix("base find") || w.hasPrefix("base save") {
			t.Errorf("calls %v: want a copy and no base", w.calls)
		}
		if !strings.Contains(w.log.String(), "copied in full") || !strings.Contains(w.log.String(), toplayer.ErrNoChangeTime.Error()) {
			t.Errorf("the log does not say why no base is used:\n%s", w.log)
		}
	})
	t.Run("a failed save is a warning: the boot goes on", func(t *testing.T) {
		w, b := newBaseWorld(t, baseCmdline)
		b.saveRel = ""
		w.fail["base save"] = errors.New("no space left on device")
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		if !w.has("commit") || !w.hasPrefix("switch_root") {
			t.Errorf("calls %v: want the boot to go on", w.calls)
		}
		if !strings.Contains(w.log.String(), "could not keep a prepared base") || w.record.Toplayer.Base != "" {
			t.Errorf("want a warning and no base in boot.json (%+v):\n%s", w.record.Toplayer, w.log)
		}
	})
	t.Run("the top layer's device is mounted once", func(t *testing.T) {
		w, _ := newBaseWorld(t, withParams("toplayer=LABEL=top"))
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		n := 0
		for _, c := range w.calls {
			if strings.HasPrefix(c, "mount /dev/vdb") {
				n++
			}
		}
		if n != 1 || w.index("mount /dev/vdb") > w.index("base key") {
			t.Errorf("calls %v: want /dev/vdb mounted once, before the fingerprint", w.calls)
		}
	})
	for _, cmdline := range []string{withParams("dockroot.cache=0"), strings.Replace(baseCmdline, "toplayer_path=top", "toplayer_path=", 1)} {
		t.Run("no bases: "+cmdline, func(t *testing.T) {
			w, _ := newBaseWorld(t, cmdline)
			if err := Boot(w.env); err != nil {
				t.Fatalf("Boot: %v\n%s", err, w.log)
			}
			if w.hasPrefix("base ") {
				t.Errorf("calls %v: want no base looked for or kept", w.calls)
			}
		})
	}
}
