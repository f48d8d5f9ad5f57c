package hook

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/machineid"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
)

const (
	fakeUUID = "4c4c4544-0042-3510-8052-b3c04f4e4d32"
	fakeMAC  = "52-54-00-ab-cd-ef"
)

// fakeMachine gives w a machine identity read from a fake /sys: a DMI
// product UUID, no DMI serial (nor a device tree) and one wired interface.
func fakeMachine(w *world) {
	sys := filepath.Join(w.base, "sys")
	tree(w.t, sys, "class/net/eth0/device/")
	mustDo(w.t, os.MkdirAll(filepath.Join(sys, "class/dmi/id"), 0o755))
	mustDo(w.t, os.WriteFile(filepath.Join(sys, "class/dmi/id/product_uuid"), []byte(strings.ToUpper(fakeUUID)+"\n"), 0o400))
	mustDo(w.t, os.WriteFile(filepath.Join(sys, "class/net/eth0/type"), []byte("1\n"), 0o444))
	mustDo(w.t, os.WriteFile(filepath.Join(sys, "class/net/eth0/address"), []byte("52:54:00:AB:CD:EF\n"), 0o444))
	w.env.Machine = &machineid.Sources{DMI: filepath.Join(sys, "class/dmi/id"), Net: filepath.Join(sys, "class/net"),
		DeviceTree: []string{filepath.Join(w.base, "proc/device-tree/serial-number")}}
}

// listWorld is a world whose toplayer_path= is list, with the directories
// dirs made on the top level.
func listWorld(t *testing.T, list string, params string, dirs ...string) *world {
	w := newWorld(t, withParams(strings.TrimSpace("toplayer_path="+list+" "+params)))
	fakeMachine(w)
	for _, d := range dirs {
		mustDo(t, os.MkdirAll(filepath.Join(w.env.TopDir, d), 0o755))
	}
	return w
}

func (w *world) applies() []string {
	var out []string
	for _, c := range w.calls {
		if a, ok := strings.CutPrefix(c, "apply "); ok {
			out = append(out, a)
		}
	}
	return out
}

// TestToplayerList: the elements of toplayer_path= are expanded with the
// machine's identity and applied in order; a missing one is skipped with
// a log line naming the machine, or fails the boot with
// dockroot.toplayer_required=1.
func TestToplayerList(t *testing.T) {
	const list = "fleet/common,fleet/machines/%u"
	machineDir := "fleet/machines/" + fakeUUID

	t.Run("two elements, applied in order", func(t *testing.T) {
		w := listWorld(t, list, "", "fleet/common", machineDir)
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		want := []string{
			"/run/dockroot/top/fleet/common -> /run/dockroot/top/rw.dockroot-tmp",
			"/run/dockroot/top/" + machineDir + " -> /run/dockroot/top/rw.dockroot-tmp",
		}
		if got := w.applies(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("applied:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if w.index("apply") < w.index("prepare") || w.index("commit") < w.index("apply /run/dockroot/top/"+machineDir) {
			t.Errorf("calls %v: want both applied into the pending layer before the commit", w.calls)
		}
		tl := w.record.Toplayer
		if tl == nil || tl.Path != "fleet/common,"+machineDir || tl.Summary.Files != 4 {
			t.Errorf("boot.json top layer %+v, want path fleet/common,%s and both summaries added (4 files)", tl, machineDir)
		}
		if w.log.find("apply the top layer: done", "4 files") == "" {
			t.Errorf("the step's note lacks the sum of both:\n%s", w.log)
		}
		if w.log.find("find the top layer: done", "fleet/common,"+machineDir) == "" {
			t.Errorf("the step's note lacks the expanded list:\n%s", w.log)
		}
	})

	t.Run("a missing element is skipped, the machine named", func(t *testing.T) {
		w := listWorld(t, list, "", "fleet/common")
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		if got := w.applies(); len(got) != 1 || !strings.HasPrefix(got[0], "/run/dockroot/top/fleet/common ") {
			t.Errorf("applied %q, want only fleet/common", got)
		}
		line := w.log.find("top layer: skipped", machineDir)
		for _, want := range []string{"fleet/machines/%u", "does not exist", "%u=" + fakeUUID, "%s=?", "%m=" + fakeMAC} {
			if !strings.Contains(line, want) {
				t.Errorf("skip line %q lacks %q\n%s", line, want, w.log)
			}
		}
		if !strings.HasPrefix(line, "WARN") {
			t.Errorf("skip line %q: want a warning", line)
		}
		if tl := w.record.Toplayer; tl == nil || tl.Path != "fleet/common" || len(tl.Skipped) != 1 || !strings.Contains(tl.Skipped[0], "does not exist") {
			t.Errorf("boot.json top layer %+v, want only fleet/common and the machine's directory as skipped", tl)
		}
		if w.log.find("find the top layer: done", "skipped", machineDir) == "" {
			t.Errorf("the step's note does not say what was skipped:\n%s", w.log)
		}
	})

	t.Run("a value the machine lacks makes its element unusable", func(t *testing.T) {
		w := listWorld(t, "fleet/common,fleet/by-serial/%s", "", "fleet/common")
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		if got := w.applies(); len(got) != 1 {
			t.Errorf("applied %q, want only fleet/common", got)
		}
		if line := w.log.find("top layer: skipped", "fleet/by-serial/%s", "%s has no value", "%u="+fakeUUID); line == "" {
			t.Errorf("no skip line naming the missing value and the machine:\n%s", w.log)
		}
	})

	t.Run("dockroot.toplayer_required=1 fails the top-layer step", func(t *testing.T) {
		w := listWorld(t, list, "dockroot.toplayer_required=1", "fleet/common")
		err := Boot(w.env)
		var be *BootError
		if !errors.As(err, &be) || be.Step != "top-layer" {
			t.Fatalf("Boot = %v, want a failure of the top-layer step\n%s", err, w.log)
		}
		for _, want := range []string{machineDir, "does not exist", "dockroot.toplayer_required=1", "%u=" + fakeUUID, "%m=" + fakeMAC} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if w.has("commit") || !w.has("abort") {
			t.Errorf("calls %v: want the pending layer aborted, nothing committed", w.calls)
		}
	})

	t.Run("every element missing: no top layer", func(t *testing.T) {
		w := listWorld(t, list, "")
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		if w.hasPrefix("apply") || w.record.Toplayer != nil {
			t.Errorf("calls %v, record %+v: want nothing applied", w.calls, w.record.Toplayer)
		}
	})

	t.Run("one path without placeholders must exist, as before", func(t *testing.T) {
		w := listWorld(t, "machine", "")
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		// Not skipped: the copy is tried and (with the real toplayer) fails.
		if got := w.applies(); len(got) != 1 || !strings.HasPrefix(got[0], "/run/dockroot/top/machine ") {
			t.Errorf("applied %q, want the one path tried", got)
		}
		if w.log.find("top layer: skipped") != "" {
			t.Errorf("a single path was skipped:\n%s", w.log)
		}
	})

	t.Run("an element the machine's values turn into Docker's store fails", func(t *testing.T) {
		w := listWorld(t, "fleet/common,%u", "")
		mustDo(t, os.WriteFile(filepath.Join(w.base, "sys/class/dmi/id/product_uuid"), []byte("var\n"), 0o400))
		err := Boot(w.env)
		if err == nil || !strings.Contains(err.Error(), "Docker data root") || !strings.Contains(err.Error(), `"%u"`) {
			t.Fatalf("Boot = %v, want the expanded element refused\n%s", err, w.log)
		}
	})
}

// keyBases is a fakeBases that remembers the key Find was asked for.
type keyBases struct {
	fakeBases
	found []rwlayer.BaseKey
}

func (b *keyBases) Find(top string, k rwlayer.BaseKey) (string, bool) {
	b.found = append(b.found, k)
	return b.fakeBases.Find(top, k)
}

// TestToplayerListBaseKey: the prepared base's key covers the whole list,
// so a change of any element, of the order or of what is skipped makes a
// new base; a single path keeps the key it had before lists.
func TestToplayerListBaseKey(t *testing.T) {
	key := func(t *testing.T, list string, dirs ...string) rwlayer.BaseKey {
		t.Helper()
		w := listWorld(t, list, "", dirs...)
		b := &keyBases{fakeBases: fakeBases{w: w}}
		w.env.Bases = b
		if err := Boot(w.env); err != nil {
			t.Fatalf("Boot: %v\n%s", err, w.log)
		}
		if len(b.found) != 1 {
			t.Fatalf("calls %v: want one base looked for", w.calls)
		}
		return b.found[0]
	}
	machineDir := "fleet/machines/" + fakeUUID
	both := key(t, "fleet/common,fleet/machines/%u", "fleet/common", machineDir)
	for _, tt := range []struct {
		name string
		k    rwlayer.BaseKey
	}{
		{"the machine's directory not there yet", key(t, "fleet/common,fleet/machines/%u", "fleet/common")},
		{"reordered", key(t, "fleet/machines/%u,fleet/common", "fleet/common", machineDir)},
		{"another element added", key(t, "fleet/common,fleet/machines/%u,fleet/site", "fleet/common", machineDir, "fleet/site")},
		{"an element removed", key(t, "fleet/common", "fleet/common")},
		{"the same directories named without a placeholder", key(t, "fleet/common,fleet/x", "fleet/common", "fleet/x")},
	} {
		if tt.k.Name() == both.Name() {
			t.Errorf("%s: the base key %+v is the one of both elements", tt.name, tt.k)
		}
	}
	if again := key(t, "fleet/common,fleet/machines/%u", "fleet/common", machineDir); again != both {
		t.Errorf("the same list and directories: key %+v, then %+v", both, again)
	}
	// One path: the key as before lists, so existing bases stay usable.
	if one := key(t, "top", "top"); one.Toplayer != "/dev/vda (LABEL=linux):top" || one.Fingerprint != "fp" {
		t.Errorf("one path: key %+v, want the single element's own", one)
	}
}

// TestCombineBaseKeys: the combined fingerprint follows every element's
// path and fingerprint, in order, and the skipped elements.
func TestCombineBaseKeys(t *testing.T) {
	k := func(desc, fp string) rwlayer.BaseKey {
		return rwlayer.BaseKey{Layer: "rw", Ref: "r", ImageID: "i", Toplayer: desc, Fingerprint: fp}
	}
	a, b := k("dev:a", "1"), k("dev:b", "2")
	base := combineBaseKeys("dev", []rwlayer.BaseKey{a, b}, []string{"c"})
	if base.Toplayer != "dev:a,b" || base.Layer != "rw" || base.ImageID != "i" {
		t.Errorf("combined %+v: want the image's fields kept and the list as Toplayer", base)
	}
	for _, tt := range []struct {
		name string
		k    rwlayer.BaseKey
	}{
		{"a fingerprint changed", combineBaseKeys("dev", []rwlayer.BaseKey{a, k("dev:b", "3")}, []string{"c"})},
		{"reordered", combineBaseKeys("dev", []rwlayer.BaseKey{b, a}, []string{"c"})},
		{"nothing skipped", combineBaseKeys("dev", []rwlayer.BaseKey{a, b}, nil)},
		{"another skipped", combineBaseKeys("dev", []rwlayer.BaseKey{a, b}, []string{"d"})},
		{"fingerprints moved between elements", combineBaseKeys("dev", []rwlayer.BaseKey{k("dev:a", "2"), k("dev:b", "1")}, []string{"c"})},
	} {
		if tt.k.Fingerprint == base.Fingerprint {
			t.Errorf("%s: the fingerprint did not change", tt.name)
		}
	}
	if one := combineBaseKeys("dev", []rwlayer.BaseKey{a}, nil); one != a {
		t.Errorf("one element, nothing skipped: %+v, want the element's key %+v", one, a)
	}
}
