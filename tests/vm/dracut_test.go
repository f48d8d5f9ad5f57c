package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
// dracut does: a Debian root with the kernel, dracut, btrfs-progs and
// systemd (cached, vmkit.DracutRoot), dockroot's module and dockroot-init
// installed into it as `make install` lays them out, the configuration
// line in /etc/dracut.conf.d, and dracut run inside it. It returns the
// initrd and the kernel.
func dracutInitrd(t *testing.T) (initrd, vmlinuz string) {
	p, k := product(t), Kernel(t)
	v := dracutOnce.get(t, "dracut initrd", func() ([2]string, error) {
		cache, err := vmkit.CacheDir()
		if err != nil {
			return [2]string{}, err
		}
		start := time.Now()
		root, err := vmkit.DracutRoot(cache, "bookworm", k)
		if err != nil {
			return [2]string{}, err
		}
		t.Logf("Debian root with dracut %s ready in %v", root, time.Since(start).Round(time.Second))
		repo, err := vmkit.RepoRoot()
		if err != nil {
			return [2]string{}, err
		}
		files := []vmkit.File{{Path: "etc/dracut.conf.d/dockroot.conf", Data: dracutConf}}
		for src, f := range dracutInstall(repo, p.Init) {
			b, err := os.ReadFile(src)
			if err != nil {
				return [2]string{}, err
			}
			f.Data = string(b)
			files = append(files, f)
		}
		out := filepath.Join(work, "dracut")
		if err := os.MkdirAll(out, 0o755); err != nil {
			return [2]string{}, err
		}
		start = time.Now()
		initrd, vmlinuz, err := vmkit.Dracut(root, k.Version, dracutArgs, files, out)
		t.Logf("dracut %s ran in %v", strings.Join(dracutArgs, " "), time.Since(start).Round(time.Second))
		return [2]string{initrd, vmlinuz}, err
	})
	return v[0], v[1]
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

var dracutJournalRE = regexp.MustCompile(`DOCKROOT-JOURNAL steps=(\d+) summary=(\d+) unit=(\d+)`)

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
	initrd, vmlinuz := dracutInitrd(t)
	const host = "dracut-toplayer-host"
	disk := dracutDisk(t, host)

	boot := func(t *testing.T, append string) (string, []string) {
		t.Helper()
		vm := Boot(t, vmkit.Options{Kernel: vmlinuz, Initrd: initrd, Append: append, Drives: []vmkit.Drive{{File: disk}}})
		expect(t, vm, "DOCKROOT-BOOTJSON-END", 600*time.Second)
		if err := vm.WaitExit(180 * time.Second); err != nil {
			t.Fatal(err)
		}
		console := plainConsole(vm)
		m := itoolsMarkerRE.FindStringSubmatch(console)
		if m == nil {
			t.Fatalf("marker line incomplete:\n%s", vmkit.Tail(console, 40))
		}
		if m[1] != "active" || m[2] != "systemd" {
			t.Errorf("booted Debian: multi-user.target %s, PID 1 %s; want active, systemd", m[1], m[2])
		}
		return console, m
	}

	const params = ancestorParam + " docker_image=debian-dracut:1 printk.devkmsg=on"
	var bootIDs []string
	for i := 1; i <= 2; i++ {
		console, m := boot(t, params)
		if m[3] != host || m[5] != "yes" {
			t.Errorf("boot %d: hostname %s, boot.json %s; want %s (the top layer) and yes", i, m[3], m[5], host)
		}
		if m[4] != "none" {
			t.Errorf("boot %d: found boot %s's file in /: the rw layer is not fresh", i, m[4])
		}
		for _, line := range []string{
			"dockroot: [1/15] mount the pseudo filesystems: done in",
			"dockroot: [13/15] commit the rw layer: done in",
			"dockroot: [15/15] hand the root over to the distribution's initramfs: done in",
		} {
			if !strings.Contains(console, line) {
				t.Errorf("boot %d: the console lacks %q", i, line)
			}
		}
		// The unit's ordering, as systemd carried it out: dockroot's
		// last step ends before systemd reports /sysroot mounted.
		handed := strings.Index(console, "dockroot: [15/15] hand the root over to the distribution's initramfs: done in")
		mounted := strings.Index(console, "Mounted sysroot.mount")
		if handed < 0 || mounted < 0 || mounted < handed {
			t.Errorf("boot %d: dockroot handed the root over at console offset %d, systemd mounted /sysroot at %d: want both, dockroot first", i, handed, mounted)
		}
		// printk.devkmsg=on lets every step line into the kernel log, and
		// from there into the journal; the initramfs's journal, which also
		// says the unit finished, is part of `journalctl -b`.
		if js := dracutJournalRE.FindStringSubmatch(console); js == nil || js[1] != "15" || js[2] != "1" || js[3] == "0" {
			t.Errorf("boot %d: journalctl -b lacks the 15 dockroot steps' starting lines, the summary or dockroot-prepare.service finishing (%v)", i, js)
		}
		rec := parseBootJSON(t, console)
		if rec.Layer.Subvolume != rwLayer || !rec.Layer.Fresh || rec.Toplayer == nil || rec.Toplayer.Summary.Files == 0 && !rec.Toplayer.Reused {
			t.Errorf("boot %d: boot.json rw layer %+v, top layer %+v", i, rec.Layer, rec.Toplayer)
		}
		bootIDs = append(bootIDs, bootIDOf(t, disk))
	}
	inspect(t, disk, "btrfs", func(top string) error {
		b, err := os.ReadFile(filepath.Join(top, rwLayer+".prev.1", "left-by-previous-boot"))
		if err != nil {
			return fmt.Errorf("boot 1's file in %s.prev.1: %w", rwLayer, err)
		}
		if got := strings.TrimSpace(string(b)); got != bootIDs[0] {
			t.Errorf("%s.prev.1 holds boot %s's file, want boot 1's %s", rwLayer, got, bootIDs[0])
		}
		return nil
	})
	t.Logf("initrd, disk and two boots took %v", time.Since(began).Round(time.Second))

	t.Run("NoImage", func(t *testing.T) {
		testenv.RequireFullVM(t, "dracut's module does nothing without an image and dracut boots subvol= as it is")
		// No image named: the unit says so and does nothing; systemd
		// mounts rootflags=subvol=docker_rwlayer, boot 2's layer, as it is.
		console, m := boot(t, "root=LABEL=linux rootflags=subvol=docker_rwlayer rw")
		if !strings.Contains(console, "nothing to do: no docker_image=") {
			t.Errorf("the hook did not say it had nothing to do:\n%s", vmkit.Tail(console, 60))
		}
		if strings.Contains(console, "dockroot: [1/") {
			t.Errorf("the hook ran steps without an image")
		}
		if m[4] != bootIDs[1] {
			t.Errorf("without an image, / holds boot %s's file, want boot 2's %s: dracut did not boot the layer as it was", m[4], bootIDs[1])
		}
	})

	t.Run("MissingImage", func(t *testing.T) {
		testenv.RequireFullVM(t, "a missing image in dracut's initramfs: the failure on screen, dockroot.onfail= follows, nothing deleted")
		before := topLevel(t, disk)
		lastID := bootIDOf(t, disk)
		// dockroot.onfail=halt: dockroot powers the machine off itself,
		// before systemd could mount anything.
		vm := Boot(t, vmkit.Options{
			Kernel: vmlinuz, Initrd: initrd,
			Append:   ancestorParam + " docker_image=nosuch:1 dockroot.onfail=halt",
			Drives:   []vmkit.Drive{{File: disk}},
			Failures: vmkit.CrashFailures,
		})
		expect(t, vm, "dockroot: BOOT FAILED", 600*time.Second)
		if err := vm.WaitExit(120 * time.Second); err != nil {
			t.Fatal(err)
		}
		console := plainConsole(vm)
		_, failure, _ := strings.Cut(console, "dockroot: BOOT FAILED")
		for _, want := range []string{"nosuch:1", "debian-dracut:1", "dockroot.onfail=halt: powering off", "reboot: Power down"} {
			if !strings.Contains(failure, want) {
				t.Errorf("after the failure the console lacks %q:\n%s", want, vmkit.Tail(console, 30))
			}
		}
		if strings.Contains(console, "Mounted sysroot.mount") || strings.Contains(console, "DOCKROOT-MARKER") {
			t.Errorf("systemd mounted /sysroot or the image booted although dockroot failed:\n%s", vmkit.Tail(console, 40))
		}
		if after := topLevel(t, disk); !slices.Equal(after, before) {
			t.Errorf("the failed boot changed the btrfs top level: %v, was %v", after, before)
		}
		if id := bootIDOf(t, disk); id != lastID {
			t.Errorf("%s holds boot %s's file after the failed boot, want %s's as it was", rwLayer, id, lastID)
		}

		// dockroot.onfail=shell (the default): dracut's emergency shell.
		vm = Boot(t, vmkit.Options{
			Kernel: vmlinuz, Initrd: initrd,
			Append:   ancestorParam + " docker_image=nosuch:1",
			Drives:   []vmkit.Drive{{File: disk}},
			Failures: vmkit.CrashFailures,
		})
		expect(t, vm, "dockroot: BOOT FAILED", 600*time.Second)
		expect(t, vm, "Entering emergency mode", 300*time.Second)
		vm.Kill()
		if after := topLevel(t, disk); !slices.Equal(after, before) {
			t.Errorf("the failed boot changed the btrfs top level: %v, was %v", after, before)
		}
	})
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
