package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// dracutMarkerScript is the marker of the dracut test's image: the
// initramfs-tools test's line, the dockroot lines in `journalctl -b`
// (which here also holds the initramfs's own journal), whether systemd in
// the initramfs ran dockroot-prepare.service, and boot.json; it leaves a
// file in / for the next boot, then powers off.
const dracutMarkerScript = `#!/bin/sh
{
	stale=none
	[ -e /left-by-previous-boot ] && stale=$(cat /left-by-previous-boot)
	echo "DOCKROOT-MARKER image=debian multi-user=$(systemctl is-active multi-user.target) init=$(cat /proc/1/comm) hostname=$(cat /etc/hostname) stale=$stale bootjson=$(test -e /run/dockroot/boot.json && echo yes || echo no)"
	echo "DOCKROOT-JOURNAL steps=$(journalctl -b -o short | grep -c 'dockroot.*\[[0-9]*/15\] .*: starting') summary=$(journalctl -b -o short | grep -c 'dockroot.*boot steps took') unit=$(journalctl -b -o short -u dockroot-prepare.service | grep -c 'Finished')"
	cat /proc/sys/kernel/random/boot_id > /left-by-previous-boot
	echo DOCKROOT-BOOTJSON-BEGIN
	cat /run/dockroot/boot.json
	echo DOCKROOT-BOOTJSON-END
	sync
} >/dev/console 2>&1
systemctl --no-block poweroff
`

// dracutConf is the file a user adds to have dracut put dockroot's module
// into every initramfs it builds (the README's line).
const dracutConf = `add_dracutmodules+=" dockroot "` + "\n"

// dracutArgs are the options the test runs dracut with, besides --kver and
// the image: --no-hostonly because the root that builds the initramfs is
// not the machine that boots it, and --drivers with the VM's disk drivers,
// which is what a host-only build on the VM would pick (the modules other
// dracut modules ask for, btrfs among them, are still added). Every driver
// of the kernel instead makes a 42 MB initramfs that took 8 minutes to
// build and a minute more to boot on a loaded 2-core machine.
var dracutArgs = []string{"--no-hostonly", "--drivers", "virtio_pci virtio_blk", "--force"}

var dracutOnce once[[2]string]

// dracutInitrd builds the initramfs the way a Fedora or Debian user of
// dracut does (buildDracut) with the README's configuration line. It
// returns the initrd and the kernel.
func dracutInitrd(t *testing.T) (initrd, vmlinuz string) {
	v := dracutOnce.get(t, "dracut initrd", func() ([2]string, error) {
		initrd, vmlinuz, err := buildDracut(t, "dracut", dracutArgs)
		return [2]string{initrd, vmlinuz}, err
	})
	return v[0], v[1]
}

// buildDracut builds an initramfs as a user of dracut does: a Debian root
// with the kernel, dracut, btrfs-progs and systemd (cached,
// vmkit.DracutRoot), dockroot's module and dockroot-init installed into it
// as `make install` lays them out, the configuration line in
// /etc/dracut.conf.d and the extra files, and dracut run inside it with
// args. It returns the initrd and the kernel, in a directory named out.
func buildDracut(t *testing.T, out string, args []string, extra ...vmkit.File) (initrd, vmlinuz string, err error) {
	p, k := product(t), Kernel(t)
	cache, err := vmkit.CacheDir()
	if err != nil {
		return "", "", err
	}
	start := time.Now()
	root, err := vmkit.DracutRoot(cache, "bookworm", k)
	if err != nil {
		return "", "", err
	}
	t.Logf("Debian root with dracut %s ready in %v", root, time.Since(start).Round(time.Second))
	repo, err := vmkit.RepoRoot()
	if err != nil {
		return "", "", err
	}
	files := append([]vmkit.File{{Path: "etc/dracut.conf.d/dockroot.conf", Data: dracutConf}}, extra...)
	for src, f := range dracutInstall(repo, p.Init) {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", "", err
		}
		f.Data = string(b)
		files = append(files, f)
	}
	dir := filepath.Join(work, out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	start = time.Now()
	initrd, vmlinuz, err = vmkit.Dracut(root, k.Version, args, files, dir)
	t.Logf("dracut %s ran in %v", strings.Join(args, " "), time.Since(start).Round(time.Second))
	return initrd, vmlinuz, err
}

// dracutInstall is where the dracut test puts dockroot's files in the
// Debian root (source -> path and mode in the root): what `make install`
// puts there (TestMakeInstallMatchesDracut holds the two together).
func dracutInstall(repo, init string) map[string]vmkit.File {
	mod := filepath.Join(repo, "hook/dracut/90dockroot")
	return map[string]vmkit.File{
		init:                                  {Path: "usr/lib/dockroot/dockroot-init", Mode: 0o755},
		filepath.Join(mod, "module-setup.sh"): {Path: "usr/lib/dracut/modules.d/90dockroot/module-setup.sh", Mode: 0o755},
		filepath.Join(repo, "dist/systemd/dockroot-prepare.service"): {Path: "usr/lib/systemd/system/dockroot-prepare.service", Mode: 0o644},
	}
}

// dracutDisk builds the disk the dracut test boots: the btrfs the
// initramfs-tools test uses (Docker's store at docker/, the top layer at
// boot_docker/ setting the hostname), holding debian-dracut:1, Debian
// bookworm with systemd and the marker unit.
func dracutDisk(t *testing.T, host string) string {
	t.Helper()
	return debianDisk(t, 3072, "debian-dracut:1", dracutMarkerScript, host)
}

var dracutUnitRE = regexp.MustCompile(`DOCKROOT-JOURNAL steps=\d+ summary=\d+ unit=(\d+)`)

// dracutHooked is dracut's initramfs (buildDracut's initrd and kernel)
// with the dracut tests' console lines.
func dracutHooked(initrd, vmlinuz string) hooked {
	return hooked{kernel: vmlinuz, initrd: initrd, mountedRoot: "Mounted sysroot.mount", emergency: "Entering emergency mode"}
}

// TestDracut: dracut's module inside a systemd initramfs that dracut
// built inside a Debian root. The ancestor's command line plus
// docker_image= boots a systemd image from Docker's store with the top
// layer applied, fresh at every boot (the first boot's file is in
// docker_rwlayer.prev.1 after the second), with dockroot-prepare.service
// done before systemd mounted /sysroot. Without an image the unit does
// nothing and dracut boots rootflags=subvol= as it is; with a missing
// image the failure is on screen, dockroot.onfail= follows and nothing is
// deleted (both in the full VM selection).
func TestDracut(t *testing.T) {
	// Two Debian boots through dracut's systemd initramfs took 13 minutes
	// on the loaded 2-core machine (dracut's build another 8 with every
	// driver): over CI's 4-minute share for one VM test.
	testenv.RequireFullVM(t, "dockroot inside dracut's systemd initramfs boots a systemd image twice, fresh each time")
	testenv.RequireRoot(t, "debootstrap", "chroot")
	began := time.Now()
	h := dracutHooked(dracutInitrd(t))
	const host = "dracut-toplayer-host"
	disk := dracutDisk(t, host)

	const params = ancestorParam + " docker_image=debian-dracut:1 printk.devkmsg=on"
	var bootIDs []string
	for i := 1; i <= 2; i++ {
		console, m, rec := h.boot(t, disk, params)
		checkFresh(t, i, console, m, rec, host)
		checkDracutUnit(t, i, console)
		bootIDs = append(bootIDs, bootIDOf(t, disk))
	}
	checkPrevOne(t, disk, bootIDs[0])
	t.Logf("initrd, disk and two boots took %v", time.Since(began).Round(time.Second))

	t.Run("NoImage", func(t *testing.T) {
		testenv.RequireFullVM(t, "dracut's module does nothing without an image and dracut boots subvol= as it is")
		h.noImage(t, disk, bootIDs[1])
	})

	t.Run("MissingImage", func(t *testing.T) {
		testenv.RequireFullVM(t, "a missing image in dracut's initramfs: the failure on screen, dockroot.onfail= follows, nothing deleted")
		h.missingImage(t, disk, "debian-dracut:1")
	})
}

// checkDracutUnit checks, on one boot's console, that systemd ran
// dockroot-prepare.service to the end before it mounted /sysroot (the
// unit's ordering as systemd carried it out), and that the initramfs's
// journal, part of `journalctl -b`, says the unit finished.
func checkDracutUnit(t *testing.T, i int, console string) {
	t.Helper()
	handed := strings.Index(console, handedOver)
	mounted := strings.Index(console, "Mounted sysroot.mount")
	if handed < 0 || mounted < 0 || mounted < handed {
		t.Errorf("boot %d: dockroot handed the root over at console offset %d, systemd mounted /sysroot at %d: want both, dockroot first", i, handed, mounted)
	}
	if u := dracutUnitRE.FindStringSubmatch(console); u == nil || u[1] == "0" {
		t.Errorf("boot %d: journalctl -b does not say dockroot-prepare.service finished (%v)", i, u)
	}
}

// ansiRE matches the terminal escapes systemd colours its status lines
// with ("Mounted \x1b[0;1;39msysroot.mount\x1b[0m - /sysroot.").
var ansiRE = regexp.MustCompile("\x1b\\[[0-9;?]*[A-Za-z]")

// plainConsole is vm's console without carriage returns and terminal
// escapes.
func plainConsole(vm *vmkit.VM) string {
	return ansiRE.ReplaceAllString(strings.ReplaceAll(vm.Console.String(), "\r", ""), "")
}

// topLevel lists the btrfs top level of disk (names, sorted).
func topLevel(t *testing.T, disk string) []string {
	t.Helper()
	var names []string
	inspect(t, disk, "btrfs", func(top string) error {
		ents, err := os.ReadDir(top)
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return err
	})
	return names
}

// TestMakeInstallMatchesDracut: `make install DESTDIR=…` (the README's
// line) installs dockroot's dracut module where the VM test that boots it
// puts it, with the same content and mode.
func TestMakeInstallMatchesDracut(t *testing.T) {
	if testing.Short() {
		t.Skip("runs make install (builds the binaries)")
	}
	repo, err := vmkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "install", "DESTDIR="+dest)
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for src, f := range dracutInstall(repo, filepath.Join(repo, "bin/dockroot-init")) {
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dest, f.Path))
		fi, serr := os.Stat(filepath.Join(dest, f.Path))
		if err != nil || serr != nil || string(got) != string(want) || fi.Mode().Perm() != f.Mode {
			t.Errorf("make install: %s is not %s as the VM test installs it, mode %o (%v)", f.Path, src, f.Mode, err)
		}
	}
}
