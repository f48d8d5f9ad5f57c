package vm

import (
	"fmt"
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

// itoolsMarkerScript is the marker of the initramfs-tools test's image:
// what the test checks on one line, the dockroot lines systemd's journal
// got from the kernel log, boot.json; it leaves a file in / for the next
// boot, then powers off.
const itoolsMarkerScript = `#!/bin/sh
{
	stale=none
	[ -e /left-by-previous-boot ] && stale=$(cat /left-by-previous-boot)
	echo "DOCKROOT-MARKER image=debian multi-user=$(systemctl is-active multi-user.target) init=$(cat /proc/1/comm) hostname=$(cat /etc/hostname) stale=$stale bootjson=$(test -e /run/dockroot/boot.json && echo yes || echo no)"
	# journald files a user-space /dev/kmsg record under the identifier
	# before its ": " (dockroot), so match the short format's whole line.
	echo "DOCKROOT-JOURNAL steps=$(journalctl -b -o short | grep -c 'dockroot.*\[[0-9]*/15\] .*: starting') summary=$(journalctl -b -o short | grep -c 'dockroot.*boot steps took') total=$(journalctl -b | wc -l) kmsg=$(dmesg | grep -c 'dockroot.*: starting')"
	cat /proc/sys/kernel/random/boot_id > /left-by-previous-boot
	echo DOCKROOT-BOOTJSON-BEGIN
	cat /run/dockroot/boot.json
	echo DOCKROOT-BOOTJSON-END
	sync
} >/dev/console 2>&1
systemctl --no-block poweroff
`

var itoolsOnce once[[2]string]

// itoolsInitrd builds the initramfs the way a Debian user does: a Debian
// root with the kernel, initramfs-tools and btrfs-progs (cached,
// vmkit.ItoolsRoot), dockroot's two hook files and dockroot-init installed
// into it, and update-initramfs run inside it. It returns the initrd and
// the kernel.
func itoolsInitrd(t *testing.T) (initrd, vmlinuz string) {
	p, k := product(t), Kernel(t)
	v := itoolsOnce.get(t, "initramfs-tools initrd", func() ([2]string, error) {
		cache, err := vmkit.CacheDir()
		if err != nil {
			return [2]string{}, err
		}
		start := time.Now()
		root, err := vmkit.ItoolsRoot(cache, "bookworm", k)
		if err != nil {
			return [2]string{}, err
		}
		t.Logf("Debian root with initramfs-tools %s ready in %v", root, time.Since(start).Round(time.Second))
		repo, err := vmkit.RepoRoot()
		if err != nil {
			return [2]string{}, err
		}
		var files []vmkit.File
		for src, dst := range itoolsInstall(repo, p.Init) {
			b, err := os.ReadFile(src)
			if err != nil {
				return [2]string{}, err
			}
			files = append(files, vmkit.File{Path: dst, Mode: 0o755, Data: string(b)})
		}
		out := filepath.Join(work, "itools")
		if err := os.MkdirAll(out, 0o755); err != nil {
			return [2]string{}, err
		}
		initrd, vmlinuz, err := vmkit.UpdateInitramfs(root, k.Version, files, out)
		return [2]string{initrd, vmlinuz}, err
	})
	return v[0], v[1]
}

var itoolsMarkerRE = regexp.MustCompile(`DOCKROOT-MARKER image=debian multi-user=(\S+) init=(\S+) hostname=(\S+) stale=(\S+) bootjson=(\S+)`)

// TestInitramfsTools: dockroot as a hook inside Debian's own initramfs,
// built by update-initramfs inside a Debian root. The ancestor's command
// line plus docker_image= boots a systemd image from Docker's store with
// the top layer applied, fresh at every boot (the first boot's file is in
// docker_rwlayer.prev.1 after the second); without docker_image= the hook
// does nothing and initramfs-tools mounts rootflags=subvol= as it is.
func TestInitramfsTools(t *testing.T) {
	testenv.RequireVM(t)
	testenv.RequireRoot(t, "debootstrap", "chroot")
	initrd, vmlinuz := itoolsInitrd(t)

	const host = "itools-toplayer-host"
	disk := debianDisk(t, 3072, "debian-itools:1", itoolsMarkerScript, host)

	boot := func(append string) (string, []string) {
		t.Helper()
		vm := Boot(t, vmkit.Options{Kernel: vmlinuz, Initrd: initrd, Append: append, Drives: []vmkit.Drive{{File: disk}}})
		expect(t, vm, "DOCKROOT-BOOTJSON-END", 600*time.Second)
		if err := vm.WaitExit(180 * time.Second); err != nil {
			t.Fatal(err)
		}
		console := vm.Console.String()
		m := itoolsMarkerRE.FindStringSubmatch(console)
		if m == nil {
			t.Fatalf("marker line incomplete:\n%s", vmkit.Tail(console, 40))
		}
		if m[1] != "active" || m[2] != "systemd" {
			t.Errorf("booted Debian: multi-user.target %s, PID 1 %s; want active, systemd", m[1], m[2])
		}
		return console, m
	}

	const params = ancestorParam + " docker_image=debian-itools:1 printk.devkmsg=on"
	var bootIDs []string
	for i := 1; i <= 2; i++ {
		console, m := boot(params)
		if m[3] != host || m[5] != "yes" {
			t.Errorf("boot %d: hostname %s, boot.json %s; want %s (the top layer) and yes", i, m[3], m[5], host)
		}
		// Fresh: boot 1's file is not in boot 2's layer.
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
		// printk.devkmsg=on lets every step line into the kernel log (by
		// default the kernel rate-limits /dev/kmsg, and dockroot sends it
		// only notices, such as the summary, and failures).
		if js := regexp.MustCompile(`DOCKROOT-JOURNAL steps=(\d+) summary=(\d+)`).FindStringSubmatch(console); js == nil || js[1] != "15" || js[2] != "1" {
			t.Errorf("boot %d: journalctl -b lacks the 15 dockroot steps' starting lines and the summary (%v)", i, js)
		}
		rec := parseBootJSON(t, console)
		if rec.Layer.Subvolume != rwLayer || !rec.Layer.Fresh || rec.Toplayer == nil || rec.Toplayer.Summary.Files == 0 && !rec.Toplayer.Reused {
			t.Errorf("boot %d: boot.json rw layer %+v, top layer %+v", i, rec.Layer, rec.Toplayer)
		}
		bootIDs = append(bootIDs, bootIDOf(t, disk))
	}
	// Boot 1's file went with its layer to docker_rwlayer.prev.1.
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

	// No image named: the hook says so and does nothing; initramfs-tools
	// mounts rootflags=subvol=docker_rwlayer, boot 2's layer, as it is.
	console, m := boot("root=LABEL=linux rootflags=subvol=docker_rwlayer rw")
	if !strings.Contains(console, "nothing to do: no docker_image=") {
		t.Errorf("the hook did not say it had nothing to do:\n%s", vmkit.Tail(console, 60))
	}
	if strings.Contains(console, "dockroot: [1/") {
		t.Errorf("the hook ran steps without an image")
	}
	if m[4] != bootIDs[1] {
		t.Errorf("without an image, / holds boot %s's file, want boot 2's %s: initramfs-tools did not boot the layer as it was", m[4], bootIDs[1])
	}

	// A missing image: the failure on screen naming the tags there are,
	// dockroot.onfail=halt powers off, the default is initramfs-tools'
	// own panic shell, and nothing is deleted.
	t.Run("MissingImage", func(t *testing.T) {
		testenv.RequireFullVM(t, "a missing image in initramfs-tools: the failure on screen, dockroot.onfail= follows, nothing deleted")
		// initramfs-tools' panic gives no shell when the command line has
		// panic= ("Disallow console access"), which the harness always
		// passes (panic=-1): its failure path is then an immediate reboot.
		h := hooked{kernel: vmlinuz, initrd: initrd, mountedRoot: "Running /scripts/local-bottom",
			emergency: "Rebooting automatically due to panic= boot argument"}
		h.missingImage(t, disk, "debian-itools:1")
	})
}

// bootIDOf reads the boot ID the last boot left in docker_rwlayer.
func bootIDOf(t *testing.T, disk string) string {
	t.Helper()
	var id string
	inspect(t, disk, "btrfs", func(top string) error {
		b, err := os.ReadFile(filepath.Join(top, rwLayer, "left-by-previous-boot"))
		id = strings.TrimSpace(string(b))
		return err
	})
	return id
}

// itoolsInstall is where the initramfs-tools test puts dockroot's files in
// the Debian root (source -> path in the root): what `make install` puts
// there (TestMakeInstallMatchesItools holds the two together).
func itoolsInstall(repo, init string) map[string]string {
	return vmkit.ItoolsInstall(repo, init)
}

// TestMakeInstallMatchesItools: `make install DESTDIR=…` (the README's
// line) installs dockroot's initramfs-tools files where the VM test that
// boots them puts them, with the same content and executable.
func TestMakeInstallMatchesItools(t *testing.T) {
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
	for src, dst := range itoolsInstall(repo, filepath.Join(repo, "bin/dockroot-init")) {
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dest, dst))
		fi, serr := os.Stat(filepath.Join(dest, dst))
		if err != nil || serr != nil || string(got) != string(want) || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("make install: %s is not %s as the VM test installs it (%v)", dst, src, err)
		}
	}
	for _, p := range []string{"usr/bin/dockroot", "usr/lib/systemd/system/dockroot-mark-good.service"} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
}
