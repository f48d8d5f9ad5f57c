package uefi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// Debian's bootloader files (packages systemd-boot-efi, grub-efi-amd64-bin,
// refind); the firmware is vmkit.OVMFCode and OVMFVars (package ovmf).
const (
	systemdBootEFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	grubEFIDir     = "/usr/lib/grub/x86_64-efi"
	refindEFI      = "/usr/share/refind/refind/refind_x64.efi"
)

// The GPT layout, in MiB: the ESP from 1 MiB, the btrfs partition after
// it, and 1 MiB at the end for the backup GPT.
const (
	espStartMiB   = 1
	espSizeMiB    = 128
	btrfsStartMiB = espStartMiB + espSizeMiB
	btrfsSizeMiB  = 1536
	diskSizeMiB   = btrfsStartMiB + btrfsSizeMiB + 1
)

// machine is the disk of the test and what boots it.
// partGUIDRE reads the partition's unique GUID from `sgdisk --info`.
var partGUIDRE = regexp.MustCompile(`Partition unique GUID: ([0-9A-Fa-f-]{36})`)

type machine struct {
	product   *vmkit.Product
	work      string
	btrfs     string // the btrfs filesystem image, spliced into the disk
	disk      string // the GPT disk image
	installed string // the boot directory `dockroot install` filled
	partUUID  string // the btrfs partition's unique GUID, for root=PARTUUID=
}

// newMachine builds the btrfs filesystem with both tags, installs their
// kernels, and makes the GPT disk. The host kernel here cannot scan
// partitions of loop devices, so the filesystems are made as files of
// their own and copied into the partitions at their offsets.
func newMachine(t *testing.T) *machine {
	t.Helper()
	start := time.Now()
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	k, err := vmkit.FetchKernel(cache)
	if err != nil {
		t.Fatal(err)
	}
	m := &machine{work: t.TempDir()}
	m.product, err = vmkit.BuildProduct(m.work)
	if err != nil {
		t.Fatal(err)
	}
	m.btrfs = filepath.Join(m.work, "btrfs.img")
	err = vmkit.BuildDisk(m.btrfs, vmkit.DiskSpec{
		SizeMB: btrfsSizeMiB, Label: rootLabel, DockerPath: dockerPath,
		Images: func(d *testenv.Dockerd) error { return buildImages(d, k, m.work) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("btrfs with %s and %s built in %v", tagA, tagB, time.Since(start).Round(time.Second))

	m.installed = filepath.Join(m.work, "installed")
	if err := os.MkdirAll(m.installed, 0o755); err != nil {
		t.Fatal(err)
	}
	err = vmkit.WithMounted(m.btrfs, "btrfs", func(top string) error {
		for _, tag := range []string{tagA, tagB} {
			out := m.cli(t, "install", tag, "--boot-dir", m.installed, "--docker-root", filepath.Join(top, dockerPath))
			t.Logf("dockroot install %s:\n%s", tag, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	m.disk = filepath.Join(m.work, "disk.img")
	f, err := os.Create(m.disk)
	if err == nil {
		err = f.Truncate(diskSizeMiB << 20)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	const sectorsPerMiB = 2048
	testenv.Run(t, "sgdisk", "--clear",
		"--new", fmt.Sprintf("1:%d:+%dM", espStartMiB*sectorsPerMiB, espSizeMiB), "--typecode", "1:ef00", "--change-name", "1:ESP",
		"--new", fmt.Sprintf("2:%d:+%dM", btrfsStartMiB*sectorsPerMiB, btrfsSizeMiB), "--typecode", "2:8300", "--change-name", "2:linux",
		m.disk)
	splice(t, m.btrfs, m.disk, btrfsStartMiB)
	info := testenv.Run(t, "sgdisk", "--info=2", m.disk)
	if mm := partGUIDRE.FindStringSubmatch(info); mm != nil {
		m.partUUID = strings.ToLower(mm[1])
	} else {
		t.Fatalf("no partition unique GUID in sgdisk --info=2:\n%s", info)
	}
	t.Logf("disk ready in %v:\n%s", time.Since(start).Round(time.Second), testenv.Run(t, "sgdisk", "--print", m.disk))
	return m
}

// buildImages builds tags A and B: the busybox base, Debian's kernel
// package files as apt-get leaves them (with depmod's index), and each
// tag's own /sbin/init.
func buildImages(d *testenv.Dockerd, k *vmkit.Kernel, work string) error {
	if err := vmkit.ImportBusybox(d, "uefi-base:1"); err != nil {
		return err
	}
	ctx := filepath.Join(work, "kernel-context")
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		return err
	}
	for _, dir := range []string{"boot", "lib"} {
		// Hard links where the cache shares the filesystem: 400 MB of modules.
		if err := exec.Command("cp", "-al", filepath.Join(k.Root, dir), ctx).Run(); err != nil {
			if out, err := exec.Command("cp", "-a", filepath.Join(k.Root, dir), ctx).CombinedOutput(); err != nil {
				return fmt.Errorf("copy the kernel: %w: %s", err, out)
			}
		}
	}
	if out, err := exec.Command("depmod", "-b", ctx, k.Version).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod -b %s %s: %w: %s", ctx, k.Version, err, out)
	}
	dockerfile := "FROM uefi-base:1\nCOPY boot /boot\nCOPY lib/modules /lib/modules\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	cmd := d.Command("build", "-q", "-t", "uefi-kernel:1", ".")
	cmd.Dir = ctx
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build uefi-kernel:1: %w: %s", err, out)
	}
	for _, tag := range []string{tagA, tagB} {
		short := tag[strings.IndexByte(tag, ':')+1:]
		err := vmkit.Build(d, tag, []string{"FROM uefi-kernel:1", "COPY init /sbin/init"},
			[]vmkit.File{{Path: "init", Mode: 0o755, Data: markerInit(short)}})
		if err != nil {
			return err
		}
	}
	return nil
}

// splice copies the filesystem image src into disk at atMiB, keeping holes.
func splice(t *testing.T, src, disk string, atMiB int) {
	t.Helper()
	testenv.Run(t, "dd", "if="+src, "of="+disk, "bs=1M", "seek="+strconv.Itoa(atMiB), "conv=notrunc,sparse", "status=none")
}

// espTree returns a fresh ESP directory holding the installed kernels
// under /dockroot.
func (m *machine) espTree(t *testing.T) string {
	t.Helper()
	esp := filepath.Join(t.TempDir(), "esp")
	if err := os.MkdirAll(esp, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "cp", "-a", m.installed, filepath.Join(esp, bootPath))
	return esp
}

// writeESP makes a FAT32 filesystem of the ESP directory (mkfs.vfat and
// mtools, no mount) and copies it into the disk's first partition.
func (m *machine) writeESP(t *testing.T, esp string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "esp.img")
	testenv.Run(t, "mkfs.vfat", "-F", "32", "-n", "ESP", "-C", img, strconv.Itoa(espSizeMiB*1024))
	ents, err := os.ReadDir(esp)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"mcopy", "-s", "-Q", "-i", img}
	for _, e := range ents {
		args = append(args, filepath.Join(esp, e.Name()))
	}
	testenv.Run(t, append(args, "::/")...)
	splice(t, img, m.disk, espStartMiB)
}

// grubError is GRUB's own error line ("error: file `/x' not found."):
// GRUB then drops to its menu or prompt and the marker never comes.
var grubError = vmkit.Failure{Name: "GRUB error", Pattern: regexp.MustCompile(`(?m)^error: `)}

var failures = append([]vmkit.Failure{grubError}, vmkit.DefaultFailures...)

// start boots the disk with OVMF: the firmware's code read-only, a fresh
// copy of its variable store (so no boot entry or default survives from a
// previous boot), the disk as virtio-blk, the serial port on the console.
// With no boot entries OVMF runs the removable-media path
// \EFI\BOOT\BOOTX64.EFI of the ESP.
func (m *machine) start(t *testing.T) *vmkit.VM {
	t.Helper()
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if err := vmkit.CopyImage(vmkit.OVMFVars, vars); err != nil {
		t.Fatal(err)
	}
	logFile, err := vmkit.NextLogFile(filepath.Join("testdata", "out"), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	opts := vmkit.Options{
		Firmware: &vmkit.Firmware{Code: vmkit.OVMFCode, Vars: vars},
		Drives:   []vmkit.Drive{{File: m.disk}},
		Failures: failures,
		LogFile:  logFile,
	}
	if os.Getenv("DOCKROOT_VM_CONSOLE") == "1" {
		opts.Live = os.Stderr
	}
	vm, err := vmkit.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	t.Logf("qemu: %s\nconsole: %s", strings.Join(vm.Argv, " "), logFile)
	return vm
}
