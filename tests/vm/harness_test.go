package vm

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// harnessInit is a busybox /init with no dockroot in it: it loads the
// virtio modules, reads both disks' labels and powers off.
const harnessInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in $(cat /modules.list); do insmod /lib/modules/$m || echo "HARNESS insmod $m failed"; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vdb ] && break; sleep 0.2; done
echo "HARNESS-LABELS linux=$(findfs LABEL=linux) top=$(findfs LABEL=top)"
echo "HARNESS-SERIAL $(cat /sys/block/vda/serial)"
echo HARNESS-DONE
poweroff -f
`

// TestHarness proves the machinery without dockroot: Debian's kernel boots
// under TCG, both virtio disks attach with their labels and serials, the
// console reaches us, and a powered-off guest ends QEMU. When it fails,
// the product tests' failures mean nothing.
func TestHarness(t *testing.T) {
	testenv.RequireVM(t)
	k := Kernel(t)
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := vmkit.BusyboxInitramfs(k, initrd, harnessInit, "virtio_blk", "virtio_pci"); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root.img")
	if err := vmkit.MakeImage(root, 256, "btrfs", "linux", ""); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top.img")
	if err := vmkit.MakeImage(top, 32, "ext4", "top", ""); err != nil {
		t.Fatal(err)
	}
	vm := Boot(t, vmkit.Options{
		Initrd: initrd,
		Drives: []vmkit.Drive{{File: root, Serial: "dockroot-root"}, {File: top}},
	})
	expect(t, vm, "HARNESS-LABELS linux=/dev/vda top=/dev/vdb", 120*time.Second)
	expect(t, vm, "HARNESS-SERIAL dockroot-root", 10*time.Second)
	expect(t, vm, "HARNESS-DONE", 10*time.Second)
	if err := vm.WaitExit(60 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestHarnessCatchesPanic proves a dying boot is reported as such, with
// the console tail, rather than waited out: /init exits, the kernel panics.
func TestHarnessCatchesPanic(t *testing.T) {
	testenv.RequireVM(t)
	initrd := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := vmkit.BusyboxInitramfs(Kernel(t), initrd, "#!/bin/busybox sh\necho HARNESS-EXITING\nexit 3\n"); err != nil {
		t.Fatal(err)
	}
	vm := Boot(t, vmkit.Options{Initrd: initrd})
	err := vm.Expect("a marker that never comes", 120*time.Second)
	var be *vmkit.BootError
	if !errors.As(err, &be) {
		t.Fatalf("Expect = %v, want a *vmkit.BootError", err)
	}
	if !strings.HasPrefix(be.Reason, "kernel panic: ") || !strings.Contains(be.Reason, "Attempted to kill init") {
		t.Errorf("reason = %q, want the kernel panic line", be.Reason)
	}
	if !strings.Contains(be.Tail, "HARNESS-EXITING") {
		t.Errorf("console tail misses the init's last output:\n%s", be.Tail)
	}
}
