package hook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"golang.org/x/sys/unix"
)

// TestBootReusesPreparedBase: the first boot copies the top layer and
// keeps a read-only base; the next boot with the same image and top layer
// makes its fresh layer from the base and copies nothing; a changed top
// layer is copied again and replaces the base; dockroot.cache=0 keeps and
// uses none.
func TestBootReusesPreparedBase(t *testing.T) {
	r := newRealBoot(t)
	record := func(paths string) bootrecord.Record {
		t.Helper()
		rec := r.record(paths)
		if rec.Toplayer == nil {
			t.Fatalf("boot.json has no top layer: %+v", rec)
		}
		return rec
	}
	bases := func() []rwlayer.BaseInfo {
		t.Helper()
		list, err := (&rwlayer.Bases{Top: r.fs.Mnt}).List()
		mustDo(t, err)
		return list
	}
	done := func(paths string) string {
		t.Helper()
		root := strings.Split(paths, "|")[0]
		mustDo(t, os.WriteFile(filepath.Join(root, "written-by-the-system"), []byte("x"), 0o644))
		mustDo(t, unix.Unmount(root, 0))
		return root
	}

	_, p1 := r.boot(1)
	rec1 := record(p1)
	if rec1.Toplayer.Reused || rec1.Toplayer.Summary.Files != 1 || !strings.HasPrefix(rec1.Toplayer.Base, layout.BasesDir+"/") {
		t.Fatalf("boot 1 (no base yet): top layer %+v, want it copied and a base kept", rec1.Toplayer)
	}
	info, err := btrfs.SubvolInfo(filepath.Join(r.fs.Mnt, rec1.Toplayer.Base))
	if err != nil || !info.ReadOnly {
		t.Fatalf("base %s: %+v, %v; want a read-only subvolume", rec1.Toplayer.Base, info, err)
	}
	done(p1)

	log2, p2 := r.boot(2)
	rec2 := record(p2)
	if !rec2.Toplayer.Reused || rec2.Toplayer.Base != rec1.Toplayer.Base || rec2.Toplayer.Summary.Files != 0 {
		t.Errorf("boot 2 (same image, same top layer): top layer %+v, want boot 1's base reused\n%s", rec2.Toplayer, log2)
	}
	if !strings.Contains(log2.String(), "from the prepared base "+rec1.Toplayer.Base) {
		t.Errorf("boot 2's log does not say the layer came from the base:\n%s", log2)
	}
	root2 := strings.Split(p2, "|")[0]
	if _, err := os.Stat(filepath.Join(root2, "written-by-the-system")); err == nil {
		t.Error("boot 2 sees what the system wrote during boot 1: the layer is not fresh")
	}
	done(p2)
	if _, err := os.Stat(filepath.Join(r.fs.Mnt, rec1.Toplayer.Base, "written-by-the-system")); err == nil {
		t.Error("the base holds what a booted system wrote")
	}

	// A changed top layer: same size, different content. It is copied
	// again, and its base replaces the old one.
	time.Sleep(2 * time.Millisecond)
	mustDo(t, os.WriteFile(filepath.Join(r.fs.Mnt, "machine/etc/hostname"), []byte("mach1ne\n"), 0o644))
	r.wantHostname = "mach1ne\n"
	_, p3 := r.boot(3)
	rec3 := record(p3)
	if rec3.Toplayer.Reused || rec3.Toplayer.Summary.Files != 1 || rec3.Toplayer.Base == rec1.Toplayer.Base || rec3.Toplayer.Base == "" {
		t.Errorf("boot 3 (top layer changed): top layer %+v, want it copied and a new base", rec3.Toplayer)
	}
	if list := bases(); len(list) != 1 || filepath.Join(layout.BasesDir, list[0].Name) != rec3.Toplayer.Base {
		t.Errorf("bases after boot 3: %+v, want only %s", list, rec3.Toplayer.Base)
	}
	done(p3)

	// dockroot.cache=0: the top layer is copied, no base is used or kept.
	base := r.cmdline
	r.cmdline = base + " dockroot.cache=0"
	_, p4 := r.boot(4)
	if rec4 := record(p4); rec4.Toplayer.Reused || rec4.Toplayer.Base != "" || rec4.Toplayer.Summary.Files != 1 {
		t.Errorf("boot 4 (dockroot.cache=0): top layer %+v, want it copied, no base", rec4.Toplayer)
	}
	if list := bases(); len(list) != 1 {
		t.Errorf("bases after boot 4: %+v, want boot 3's alone", list)
	}
	done(p4)

	// And back on: boot 3's base still matches.
	r.cmdline = base
	_, p5 := r.boot(5)
	if rec5 := record(p5); !rec5.Toplayer.Reused || rec5.Toplayer.Base != rec3.Toplayer.Base {
		t.Errorf("boot 5: top layer %+v, want boot 3's base reused", rec5.Toplayer)
	}
}
