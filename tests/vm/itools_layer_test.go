package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// TestInitramfsToolsPreviousLayer: in hook mode, dockroot.layer=previous
// boots NAME.prev.1 as it was left although the command line says
// rootflags=subvol=NAME: dockroot-init writes the rootflags= to mount and
// dockroot's boot script puts them into initramfs-tools' ROOTFLAGS
// (/conf/param.conf). Two fresh boots leave boot 1's layer in
// docker_rwlayer.prev.1; the third boot's / is that layer, with boot 1's
// file, and nothing is rotated or made.
func TestInitramfsToolsPreviousLayer(t *testing.T) {
	testenv.RequireFullVM(t, "initramfs-tools boots dockroot.layer=previous")
	testenv.RequireRoot(t, "debootstrap", "chroot")
	initrd, vmlinuz := itoolsInitrd(t)
	disk := rootfsDisk(t)

	boot := func(params string) (string, []string) {
		t.Helper()
		start := time.Now()
		vm := Boot(t, vmkit.Options{Kernel: vmlinuz, Initrd: initrd, Append: params, Drives: []vmkit.Drive{{File: disk}}})
		expect(t, vm, "DOCKROOT-BOOTJSON-END", 600*time.Second)
		if err := vm.WaitExit(180 * time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("boot %q took %v", params, time.Since(start).Round(time.Second))
		console := vm.Console.String()
		m := itoolsMarkerRE.FindStringSubmatch(console)
		if m == nil || m[1] != "active" || m[2] != "systemd" {
			t.Fatalf("the image's systemd did not reach multi-user.target (%v):\n%s", m, vmkit.Tail(console, 40))
		}
		return console, m
	}
	const params = ancestorParam + " docker_image=debian-itools:1"
	var ids []string
	for i := 1; i <= 2; i++ {
		boot(params)
		ids = append(ids, bootIDOf(t, disk))
	}

	console, m := boot(params + " dockroot.layer=previous")
	if m[4] != ids[0] {
		t.Errorf("dockroot.layer=previous: / holds boot %s's file, want boot 1's %s", m[4], ids[0])
	}
	r := luksRootRE.FindStringSubmatch(console)
	if want := "[/" + rwLayer + ".prev.1]"; r == nil || !strings.HasSuffix(r[1], want) {
		t.Errorf("dockroot.layer=previous: / is mounted from %v, want subvolume %s.prev.1", r, rwLayer)
	}
	if !strings.Contains(console, "mounts "+rwLayer+".prev.1 instead of "+rwLayer) {
		t.Errorf("dockroot did not say that initramfs-tools mounts %s.prev.1:\n%s", rwLayer, vmkit.Tail(console, 80))
	}
	rec := parseBootJSON(t, console)
	if rec.Layer.Subvolume != rwLayer+".prev.1" || rec.Layer.Fresh {
		t.Errorf("boot.json rw layer %+v, want %s.prev.1 as it was left", rec.Layer, rwLayer)
	}
	// Nothing rotated: NAME is boot 2's layer still, and boot 3 wrote into
	// NAME.prev.1.
	if got := bootIDOf(t, disk); got != ids[1] {
		t.Errorf("after dockroot.layer=previous, %s holds boot %s's file, want boot 2's %s", rwLayer, got, ids[1])
	}
	inspect(t, disk, "btrfs", func(top string) error {
		b, err := os.ReadFile(filepath.Join(top, rwLayer+".prev.1", "left-by-previous-boot"))
		if err == nil && strings.TrimSpace(string(b)) == ids[0] {
			t.Errorf("boot 3 did not write into %s.prev.1", rwLayer)
		}
		return err
	})
}
