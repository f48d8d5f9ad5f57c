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

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// mkinitcpioHooks is the HOOKS line of the test's /etc/mkinitcpio.conf:
// the README's busybox-based line (the ancestor's case: dockroot after
// resume, before fsck) with debian-busybox after base, the one Debian-only
// repair (vmkit.MkinitcpioDebianHook). No autodetect: in a chroot it
// would detect the build host's modules.
const mkinitcpioHooks = "base debian-busybox udev modconf block filesystems keyboard resume dockroot fsck"

// mkinitcpioImage is the systemd image the mkinitcpio tests boot: Debian
// with the marker of the initramfs-tools test.
const mkinitcpioImage = "debian-mk:1"

// mkinitcpioParams is the ancestor's command line plus docker_image=.
// init= is named because mkinitcpio's /init checks that init is executable
// inside /new_root, and Debian's /sbin/init is an absolute symlink that
// check resolves outside it (shared/tools/README.md).
const mkinitcpioParams = ancestorParam + " docker_image=" + mkinitcpioImage + " init=/lib/systemd/systemd printk.devkmsg=on"

// mkinitcpioSystemdHooks is the systemd-based image's HOOKS line: the
// systemd hook instead of udev and resume (it replaces base's /init, udev
// and resume; base stays for the emergency shell), dockroot after it.
const mkinitcpioSystemdHooks = "base debian-busybox systemd modconf block filesystems keyboard dockroot fsck"

var mkinitcpioOnce = map[string]*once[[2]string]{mkinitcpioHooks: {}, mkinitcpioSystemdHooks: {}}

// mkinitcpioInitrd builds the initramfs the way an Arch user does, in a
// Debian root: mkinitcpio 39.2 installed there from shared/tools (cached,
// vmkit.MkinitcpioRoot), dockroot's files installed into it where `make
// install` puts them, HOOKS in /etc/mkinitcpio.conf, and `mkinitcpio -k
// KVER -g …` run inside it. It returns the initramfs and the kernel.
func mkinitcpioInitrd(t *testing.T, hooks string) (initrd, vmlinuz string) {
	repo, err := vmkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tarball := mkinitcpioTarball(t, repo)
	p, k := product(t), Kernel(t)
	v := mkinitcpioOnce[hooks].get(t, "mkinitcpio initramfs", func() ([2]string, error) {
		cache, err := vmkit.CacheDir()
		if err != nil {
			return [2]string{}, err
		}
		start := time.Now()
		root, err := vmkit.MkinitcpioRoot(cache, "bookworm", k, tarball)
		if err != nil {
			return [2]string{}, err
		}
		t.Logf("Debian root with mkinitcpio %s ready in %v: %s", vmkit.MkinitcpioVersion, time.Since(start).Round(time.Second), root)
		files := []vmkit.File{{Path: "etc/mkinitcpio.conf", Data: "MODULES=()\nBINARIES=()\nFILES=()\nHOOKS=(" + hooks + ")\n"}}
		for src, inst := range mkinitcpioInstall(repo, p.Init) {
			b, err := os.ReadFile(src)
			if err != nil {
				return [2]string{}, err
			}
			files = append(files, vmkit.File{Path: inst.path, Mode: inst.mode, Data: string(b)})
		}
		out := filepath.Join(work, "mkinitcpio", strings.Fields(hooks)[2])
		if err := os.MkdirAll(out, 0o755); err != nil {
			return [2]string{}, err
		}
		start = time.Now()
		initrd, vmlinuz, log, err := vmkit.Mkinitcpio(root, k.Version, files, out)
		// With the systemd hook mkinitcpio reports the pieces Debian's
		// systemd lacks (mkinitcpioTolerated, checked line by line below)
		// and exits 1, having written the image.
		if err != nil && !(hooks == mkinitcpioSystemdHooks && strings.Contains(log, "errors were encountered during the build")) {
			return [2]string{}, err
		}
		t.Logf("mkinitcpio (HOOKS=(%s)) built %s in %v", hooks, initrd, time.Since(start).Round(time.Second))
		if !strings.Contains(log, "Running build hook: [dockroot]") {
			return [2]string{}, fmt.Errorf("mkinitcpio did not run dockroot's build hook:\n%s", log)
		}
		// mkinitcpio reports a build hook's failure in its output ("errors
		// were encountered during the build"), not always in its status.
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "ERROR:") && !mkinitcpioTolerated(hooks, l) {
				return [2]string{}, fmt.Errorf("mkinitcpio reported %q:\n%s", strings.TrimSpace(l), log)
			}
		}
		return [2]string{initrd, vmlinuz}, nil
	})
	return v[0], v[1]
}

// mkinitcpioTarball is mkinitcpio's unmodified source: $DOCKROOT_MKINITCPIO,
// or shared/tools/mkinitcpio-VERSION.tar.gz beside the checkout. mkinitcpio
// is not a Debian package; without its source the tests skip.
func mkinitcpioTarball(t *testing.T, repo string) string {
	p := os.Getenv("DOCKROOT_MKINITCPIO")
	if p == "" {
		p = filepath.Join(filepath.Dir(repo), "shared", "tools", "mkinitcpio-"+vmkit.MkinitcpioVersion+".tar.gz")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("mkinitcpio %s's source is not here (%v): set DOCKROOT_MKINITCPIO to the tarball of archlinux/mkinitcpio's tag v%s", vmkit.MkinitcpioVersion, err, vmkit.MkinitcpioVersion)
	}
	return p
}

// mkinitcpioTolerated says whether an ERROR line of mkinitcpio's output
// is one the test accepts: with the systemd hook, the pieces mkinitcpio
// 39.2 adds for systemd >= 254 that Debian bookworm's systemd 252 does not
// have. Only /usr/lib/systemd/systemd-executor is reported by name; the
// missing units (systemd-battery-check.service, systemd-bsod.service and
// systemd-hibernate-resume.service, which 252 has only as the template
// systemd-hibernate-resume@.service) are counted silently by
// add_systemd_unit. So that image cannot resume from hibernation.
func mkinitcpioTolerated(hooks, line string) bool {
	return hooks == mkinitcpioSystemdHooks && strings.Contains(line, "/usr/lib/systemd/systemd-executor")
}

type installed struct {
	path string
	mode os.FileMode
}

// mkinitcpioInstall is where the mkinitcpio tests put dockroot's files in
// the Debian root (source -> path in the root): what `make install` puts
// there (TestMakeInstallMatchesMkinitcpio holds the two together).
func mkinitcpioInstall(repo, init string) map[string]installed {
	return map[string]installed{
		init: {"usr/lib/dockroot/dockroot-init", 0o755},
		filepath.Join(repo, "hook/mkinitcpio/install/dockroot"):      {"usr/lib/initcpio/install/dockroot", 0o644},
		filepath.Join(repo, "hook/mkinitcpio/hooks/dockroot"):        {"usr/lib/initcpio/hooks/dockroot", 0o644},
		filepath.Join(repo, "dist/systemd/dockroot-prepare.service"): {"usr/lib/systemd/system/dockroot-prepare.service", 0o644},
	}
}

// mkinitcpioDisk builds a btrfs disk with the test's systemd image in a
// real dockerd's store and a top layer setting the hostname to host.
func mkinitcpioDisk(t *testing.T, host string) string {
	t.Helper()
	return debianDisk(t, 3072, mkinitcpioImage, itoolsMarkerScript, host)
}

// mkinitcpioHooked is the mkinitcpio image built with hooks, with the
// mkinitcpio tests' console lines: its default mount handler's, and the
// emergency shell dockroot's runtime hook starts.
func mkinitcpioHooked(t *testing.T, hooks string) hooked {
	initrd, vmlinuz := mkinitcpioInitrd(t, hooks)
	return hooked{kernel: vmlinuz, initrd: initrd,
		mountedRoot: ":: mounting 'LABEL=" + rootLabel + "' on real root",
		emergency:   "You are now being dropped into an emergency shell"}
}

// mkinitcpioBoot boots disk with the mkinitcpio image built with hooks
// and cmdline (hooked.boot).
func mkinitcpioBoot(t *testing.T, hooks, disk, cmdline string) (string, []string, *bootRecord) {
	t.Helper()
	return mkinitcpioHooked(t, hooks).boot(t, disk, cmdline)
}

// checkMkinitcpioOrder checks, on one boot's console, that mkinitcpio ran
// dockroot as a hook after resume and then mounted root= itself: dockroot
// made and committed the layer, released the root, and mkinitcpio's
// default mount handler mounted root= (with rootflags=subvol=NAME) after.
func checkMkinitcpioOrder(t *testing.T, boot int, console string) {
	t.Helper()
	seq := []string{
		":: running hook [resume]",
		":: running hook [dockroot]",
		"dockroot: [1/15] mount the pseudo filesystems: done in",
		"dockroot: [13/15] commit the rw layer: done in",
		"dockroot: [15/15] hand the root over to the distribution's initramfs: done in",
		":: mounting 'LABEL=linux' on real root",
	}
	at := 0
	for _, s := range seq {
		i := strings.Index(console[at:], s)
		if i < 0 {
			t.Errorf("boot %d: the console lacks %q after %q (mkinitcpio's order: resume, dockroot, mount root=):\n%s", boot, s, console[:at][max(0, at-200):], vmkit.Tail(console, 60))
			return
		}
		at += i + len(s)
	}
}

// TestMkinitcpio: dockroot as a hook inside the busybox-based initramfs
// mkinitcpio 39.2 builds (the ancestor's setup), built by mkinitcpio
// inside a Debian root with the README's HOOKS line. The ancestor's
// command line plus docker_image= boots a systemd image from Docker's
// store: dockroot runs after resume, mkinitcpio mounts
// rootflags=subvol=docker_rwlayer itself, the top layer is applied,
// boot.json is there and the journal has the step lines; the second boot
// is fresh, the first one's file in docker_rwlayer.prev.1. Without an
// image the hook does nothing and mkinitcpio boots rootflags=subvol= as it
// is; with a missing image the failure is on screen, dockroot.onfail=
// follows (halt powers off; shell is mkinitcpio's emergency shell) and
// nothing is deleted.
func TestMkinitcpio(t *testing.T) {
	testenv.RequireVM(t)
	// Measured on the shared 2-core machine: mkinitcpio's build 7m47s
	// (cached root), each boot to power-off 4m31s: far over CI's 4 minutes.
	testenv.RequireFullVM(t, "dockroot's hook inside mkinitcpio's busybox-based initramfs boots a systemd image, fresh twice")
	testenv.RequireRoot(t, "debootstrap", "chroot", "make")
	const host = "mkinitcpio-toplayer-host"
	disk := mkinitcpioDisk(t, host)

	var bootIDs []string
	for i := 1; i <= 2; i++ {
		console, m, rec := mkinitcpioBoot(t, mkinitcpioHooks, disk, mkinitcpioParams)
		checkFresh(t, i, console, m, rec, host)
		checkMkinitcpioOrder(t, i, console)
		bootIDs = append(bootIDs, bootIDOf(t, disk))
	}
	checkPrevOne(t, disk, bootIDs[0])

	t.Run("NoImage", func(t *testing.T) {
		testenv.RequireFullVM(t, "dockroot's mkinitcpio hook does nothing without an image and mkinitcpio boots subvol= as it is")
		mkinitcpioHooked(t, mkinitcpioHooks).noImage(t, disk, bootIDs[1])
	})

	t.Run("MissingImage", func(t *testing.T) {
		testenv.RequireFullVM(t, "a missing image in mkinitcpio's busybox image: the failure on screen, dockroot.onfail= follows, nothing deleted")
		mkinitcpioHooked(t, mkinitcpioHooks).missingImage(t, disk, mkinitcpioImage)
	})
}

// TestMkinitcpioMigration is issue 13 §4.4: a machine that booted with
// the ancestor's mkinitcpio hook, whose docker_rwlayer is a plain `btrfs
// subvolume snapshot` of the image's top-layer subvolume made on every
// boot with no record, switches to dockroot's mkinitcpio hook with the
// same command line. dockroot adopts the old layer (it is a snapshot of
// the booted image's top layer) and keeps it, under the adoption rules
// (snapshot/rwlayer/layers_adopt.go): as docker_rwlayer.adopted, outside
// the numbered previous layers, never deleted automatically; the new
// layer is fresh, and a second boot rotates only dockroot's own layers.
func TestMkinitcpioMigration(t *testing.T) {
	testenv.RequireVM(t)
	testenv.RequireFullVM(t, "a disk booted by the ancestor's mkinitcpio hook is adopted by dockroot's (issue 13 §4.4)")
	testenv.RequireRoot(t, "debootstrap", "chroot", "make", "btrfs")
	const host = "mkinitcpio-migrated-host"
	disk := mkinitcpioDisk(t, host)

	// The ancestor's boot, done on the host as its hook did it in the
	// initramfs, then the machine's own use of that layer.
	var subvol string
	inspect(t, disk, "btrfs", func(top string) error {
		img, err := graphdriver.New(top, dockerPath).Resolve(mkinitcpioImage)
		if err != nil {
			return err
		}
		subvol = img.Subvolume
		out, err := exec.Command("btrfs", "subvolume", "snapshot", filepath.Join(top, img.Subvolume), filepath.Join(top, rwLayer)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("the ancestor's snapshot: %v: %s", err, out)
		}
		return os.WriteFile(filepath.Join(top, rwLayer, "left-by-previous-boot"), []byte("ancestor\n"), 0o644)
	})
	t.Logf("ancestor's %s: a snapshot of %s", rwLayer, subvol)

	adopted := rwLayer + layout.AdoptedSuffix
	var bootIDs []string
	for i := 1; i <= 2; i++ {
		console, m, _ := mkinitcpioBoot(t, mkinitcpioHooks, disk, mkinitcpioParams)
		if m[3] != host {
			t.Errorf("boot %d: hostname %s, want %s (the top layer)", i, m[3], host)
		}
		if m[4] != "none" {
			t.Errorf("boot %d: / holds boot %s's file: the rw layer is not fresh", i, m[4])
		}
		checkMkinitcpioOrder(t, i, console)
		want := "adopted " + rwLayer + ": a snapshot of " + subvol
		if got := strings.Contains(console, want); got != (i == 1) {
			t.Errorf("boot %d: the console says %q: %v; want it on the first boot only:\n%s", i, want, got, vmkit.Tail(console, 80))
		}
		bootIDs = append(bootIDs, bootIDOf(t, disk))
		inspect(t, disk, "btrfs", func(top string) error {
			b, err := os.ReadFile(filepath.Join(top, adopted, "left-by-previous-boot"))
			if err != nil {
				return fmt.Errorf("boot %d: the ancestor's layer is not kept as %s: %w", i, adopted, err)
			}
			if got := strings.TrimSpace(string(b)); got != "ancestor" {
				t.Errorf("boot %d: %s holds %q, want the ancestor's layer", i, adopted, got)
			}
			// The adopted layer is not a numbered previous layer:
			// after boot 1 there is none, after boot 2 it is boot 1's.
			b, err = os.ReadFile(filepath.Join(top, rwLayer+".prev.1", "left-by-previous-boot"))
			switch {
			case i == 1 && !os.IsNotExist(err):
				t.Errorf("boot 1: %s.prev.1 exists (%q, %v); the adopted layer must be kept as %s only", rwLayer, b, err, adopted)
			case i == 2 && (err != nil || strings.TrimSpace(string(b)) != bootIDs[0]):
				t.Errorf("boot 2: %s.prev.1 holds %q (%v), want boot 1's %s", rwLayer, b, err, bootIDs[0])
			}
			return nil
		})
	}
	t.Logf("the ancestor's layer kept as %s over two boots; %s.prev.1 is dockroot's boot 1", adopted, rwLayer)
}

// TestMakeInstallMatchesMkinitcpio: `make install DESTDIR=…` (the
// README's line) installs dockroot's mkinitcpio files where the VM test
// that boots them puts them, with the same content and mode.
func TestMakeInstallMatchesMkinitcpio(t *testing.T) {
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
	for src, inst := range mkinitcpioInstall(repo, filepath.Join(repo, "bin/dockroot-init")) {
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dest, inst.path))
		fi, serr := os.Stat(filepath.Join(dest, inst.path))
		if err != nil || serr != nil {
			t.Errorf("make install: %s: %v %v", inst.path, err, serr)
		} else if string(got) != string(want) || fi.Mode().Perm() != inst.mode {
			t.Errorf("make install: %s (mode %v) is not %s as the VM test installs it (mode %v)", inst.path, fi.Mode().Perm(), src, inst.mode)
		}
	}
}

// TestMkinitcpioSystemd: the systemd-based mkinitcpio image (HOOKS with
// systemd instead of udev and resume), where runtime hooks do not run:
// dockroot's build hook adds dockroot-prepare.service instead, which makes
// the fresh layer before systemd-fstab-generator's sysroot.mount mounts
// root= with rootflags=subvol=docker_rwlayer. Built from Debian bookworm's
// systemd 252, which lacks the pieces mkinitcpio 39.2 adds for newer
// systemd (mkinitcpioTolerated).
func TestMkinitcpioSystemd(t *testing.T) {
	testenv.RequireVM(t)
	testenv.RequireFullVM(t, "mkinitcpio's systemd-based image runs dockroot-prepare.service before sysroot.mount")
	testenv.RequireRoot(t, "debootstrap", "chroot", "make")
	const host = "mkinitcpio-systemd-host"
	disk := mkinitcpioDisk(t, host)
	console, m, rec := mkinitcpioBoot(t, mkinitcpioSystemdHooks, disk, mkinitcpioParams)
	if m[3] != host || m[4] != "none" || m[5] != "yes" {
		t.Errorf("hostname %s, stale file %s, boot.json %s; want %s (the top layer), none, yes", m[3], m[4], m[5], host)
	}
	const handover = "dockroot: [15/15] hand the root over to the distribution's initramfs: done in"
	for _, s := range []string{"dockroot: [13/15] commit the rw layer: done in", handover} {
		if !strings.Contains(console, s) {
			t.Errorf("the console lacks %q:\n%s", s, vmkit.Tail(console, 80))
		}
	}
	// systemd's status line for sysroot.mount (by its description).
	if i, j := strings.Index(console, handover), strings.Index(console, "Mounted /sysroot"); i < 0 || j >= 0 && j < i {
		t.Errorf("/sysroot was mounted (console offset %d) before dockroot handed the root over (%d)", j, i)
	}
	if js := regexp.MustCompile(`DOCKROOT-JOURNAL steps=(\d+) summary=(\d+)`).FindStringSubmatch(console); js == nil || js[1] != "15" {
		t.Errorf("journalctl -b lacks the 15 dockroot steps' starting lines (%v)", js)
	}
	if rec == nil || rec.Layer.Subvolume != rwLayer || !rec.Layer.Fresh {
		t.Errorf("boot.json %+v, want a fresh %s", rec, rwLayer)
	}
}
