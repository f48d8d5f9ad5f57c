package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// The arm64 boot: Debian's arm64 kernel on QEMU's virt board (TCG), an
// arm64 busybox image in a real dockerd btrfs store, dockroot-init for
// arm64 from an initramfs `dockroot initramfs` built from the arm64
// kernel's own module tree.
const (
	arm64Image = "desk:arm64"
	// arm64Serial is the device tree's serial-number the VM boots with
	// (vmkit.VirtDTB): QEMU's own virt tree has none, boards' firmware sets
	// it, and dockroot reads it for %s on machines without DMI.
	arm64Serial = "dockroot-arm64-sn1"
	arm64Mem    = 1024
	// arm64Boot bounds power-on to the image's marker under TCG, which
	// emulates arm64 several times slower than x86 on x86.
	arm64Boot = 240 * time.Second
)

// arm64Init is deskInit with one more line: the machine the kernel reports
// and the file only the fleet directory of this machine's serial number has.
var arm64Init = strings.Replace(deskInit, "echo DOCKROOT-BOOTJSON-BEGIN\n",
	"echo \"DOCKROOT-ARM64 machine=$(uname -m) fleet=$(cat /etc/fleet-machine 2>/dev/null)\"\necho DOCKROOT-BOOTJSON-BEGIN\n", 1)

// arm64Params are the ancestor's parameters with the image named and a
// fleet directory per device-tree serial number after the common top layer.
var arm64Params = strings.Replace(ancestorParam, "toplayer_path="+toplayerPath, "toplayer_path="+toplayerPath+",fleet/%s", 1) +
	" docker_image=" + arm64Image

// TestArm64Boot boots dockroot-init for arm64 twice: the image's own init
// runs as PID 1 on an aarch64 kernel, in a fresh layer with the top layer
// (hostname) and the fleet directory named by the device tree's serial
// number (%s) applied, and the second boot does not see what the first
// wrote.
//
// It is in make test's selection: 1m44s to 2m32s measured under TCG on a
// loaded 2-core machine (the longer run included 46 s building the binaries
// the other VM tests share); each boot takes 20 to 33 s.
func TestArm64Boot(t *testing.T) {
	testenv.RequireVM(t)
	testenv.RequireRoot(t, "qemu-system-aarch64", "fdtput")
	start := time.Now()
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	k, err := vmkit.FetchKernelArch(cache, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(k.Version, "-arm64") {
		t.Fatalf("kernel %s is not Debian's arm64 kernel", k.Version)
	}
	bbRoot, err := vmkit.FetchDeb(cache, "arm64", "busybox-static")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	initrd := arm64Initramfs(t, k, dir)

	disk := filepath.Join(dir, "arm64.img")
	if err := vmkit.BuildDisk(disk, vmkit.DiskSpec{
		SizeMB:     1024,
		Label:      rootLabel,
		DockerPath: dockerPath,
		Images: func(d *testenv.Dockerd) error {
			entries, err := vmkit.BusyboxRootfsOf(filepath.Join(bbRoot, "bin", "busybox"), "busybox-image")
			if err != nil {
				return err
			}
			entries = append(entries, vmkit.FileEntries([]vmkit.File{
				{Path: "sbin/init", Mode: 0o755, Data: arm64Init},
				{Path: "etc/desk-tag", Data: arm64Image + "\n"},
			})...)
			return vmkit.ImportRootfs(d, arm64Image, "linux/arm64", entries)
		},
		Files: []vmkit.File{
			{Path: toplayerPath + "/etc/hostname", Data: toplayerHost + "\n"},
			{Path: "fleet/" + arm64Serial + "/etc/fleet-machine", Data: "serial-dir\n"},
		},
	}); err != nil {
		t.Fatal(err)
	}
	dtb := filepath.Join(dir, "virt.dtb")
	if err := vmkit.VirtDTB(dtb, arm64Mem, 1, arm64Serial); err != nil {
		t.Fatal(err)
	}
	t.Logf("arm64 fixtures ready in %v", time.Since(start).Round(time.Second))

	var boots []string
	for i := 1; i <= 2; i++ {
		bootStart := time.Now()
		vm := Boot(t, vmkit.Options{Arch: "arm64", Kernel: k.Vmlinuz, Initrd: initrd, DTB: dtb, MemoryMB: arm64Mem,
			Append: arm64Params, Drives: []vmkit.Drive{{File: disk}}})
		expect(t, vm, "DOCKROOT-MARKER", arm64Boot)
		expect(t, vm, "DOCKROOT-BOOTJSON-END", 60*time.Second)
		if err := vm.WaitExit(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("boot %d: %v", i, time.Since(bootStart).Round(time.Second))
		boots = append(boots, vm.Console.String())
	}

	for i, console := range boots {
		m := parseMarker(t, console)
		if m.Image != arm64Image || m.Hostname != toplayerHost || m.PID != "1" {
			t.Errorf("boot %d: image=%s hostname=%s pid=%s; want image=%s, hostname=%s (top layer), pid=1",
				i+1, m.Image, m.Hostname, m.PID, arm64Image, toplayerHost)
		}
		if !strings.Contains(console, "DOCKROOT-ARM64 machine=aarch64 fleet=serial-dir") {
			t.Errorf("boot %d: the image's init does not report machine=aarch64 and fleet/%s (toplayer_path=...,fleet/%%s with the device tree's serial number):\n%s",
				i+1, arm64Serial, vmkit.Tail(console, 40))
		}
		if strings.Contains(console, "DOCKROOT-STALE") || !strings.Contains(console, "DOCKROOT-FRESH") {
			t.Errorf("boot %d: / is not fresh:\n%s", i+1, vmkit.Tail(console, 20))
		}
		rec := parseBootJSON(t, console)
		if !rec.Layer.Fresh || rec.Layer.Subvolume != rwLayer || !strings.HasSuffix(rec.Ref, arm64Image) || rec.Toplayer == nil {
			t.Errorf("boot %d: boot.json ref=%s rw_layer=%+v toplayer=%v; want %s in a fresh %s with a top layer",
				i+1, rec.Ref, rec.Layer, rec.Toplayer != nil, arm64Image, rwLayer)
		}
	}
	if parseMarker(t, boots[0]).BootID == parseMarker(t, boots[1]).BootID {
		t.Error("both boots report the same boot_id; the second boot did not happen")
	}
	// Boot 2 is fresh although it made its layer from the base boot 1 kept.
	checkBaseReused(t, parseBootJSON(t, boots[0]), parseBootJSON(t, boots[1]), boots[1])
	t.Logf("arm64 test: %v in all", time.Since(start).Round(time.Second))
}

// arm64Initramfs runs the real `dockroot initramfs` on the arm64 kernel's
// tree the way `make build` lays the binaries out (dockroot and
// dockroot-init for this machine, arm64/dockroot-init beside them), with no
// --init: the builder must pick the arm64 init by the kernel's modules.
func arm64Initramfs(t *testing.T, k *vmkit.Kernel, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	p := product(t)
	if err := os.MkdirAll(filepath.Join(bin, "arm64"), 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{p.CLI: "dockroot", p.Init: "dockroot-init"} {
		if err := vmkit.CopyImage(src, filepath.Join(bin, dst)); err != nil {
			t.Fatal(err)
		}
	}
	if err := vmkit.GoBuildArch("arm64", filepath.Join(bin, "arm64", "dockroot-init"), "./cmd/dockroot-init"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "initramfs-arm64.img")
	cmd := exec.Command(filepath.Join(bin, "dockroot"), "initramfs", "-o", out, "--root", k.Root, "--kernel-version", k.Version,
		"--docker-btrfs-json=")
	cmd.Env = withoutEnv(os.Environ(), "DOCKROOT_INIT")
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, msg)
	}
	t.Logf("dockroot initramfs (arm64):\n%s", strings.TrimSpace(string(msg)))
	for _, want := range []string{"kernel " + k.Version, " virtio_blk", " virtio_pci", " btrfs", "arm64/dockroot-init"} {
		if !strings.Contains(string(msg), want) {
			t.Errorf("dockroot initramfs output does not mention %q", want)
		}
	}
	return out
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return out
}
