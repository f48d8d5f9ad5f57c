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

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// The fleet admin's loop of the README (issue 15, §6), with real boots: one
// registry image, two laptops with one shared top-layer tree, each its own
// machine (SMBIOS UUID) and so its own hostname; `dockroot update` stages
// each new image, the next power-on boots it, and an image that never marks
// itself good falls back to the last good one, which `docker image prune
// -a` did not delete.

// fleetInit is /sbin/init of the fleet images. It says which image booted
// on which machine, marks the boot good with the real `dockroot mark-good`
// when the image is a healthy one, prints boot.json and powers off.
const fleetInit = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/class ] || mount -t sysfs sysfs /sys
echo "FLEET-MARKER version=$(cat /etc/fleet-version) hostname=$(cat /etc/hostname) common=$(cat /etc/fleet-common) uuid=$(cat /sys/class/dmi/id/product_uuid)"
if [ "$(cat /etc/fleet-health)" = good ]; then
	if dockroot mark-good; then echo FLEET-MARKED-GOOD; else echo "FLEET-MARK-GOOD-FAILED $?"; fi
else
	echo FLEET-NEVER-MARKS-GOOD
fi
echo FLEET-BOOTJSON-BEGIN
cat /run/dockroot/boot.json
echo FLEET-BOOTJSON-END
echo FLEET-DONE
sync
poweroff -f
`

var fleetMarkerRE = regexp.MustCompile(`FLEET-MARKER version=(\S*) hostname=(\S*) common=(\S*) uuid=(\S*)`)

// The fleet's kernel command line, as the admin gives it to `dockroot
// menu`: one top-layer tree on the root btrfs, the shared part and the
// machine's own directory; one try for a new image, so a bad one costs one
// boot.
const (
	fleetRWLayer  = "rw"
	fleetToplayer = "fleet/common,fleet/machines/%u"
	fleetBootDir  = "boot/dockroot" // on the btrfs top level
	fleetESP      = "esp"           // systemd-boot's entries, on the top level too
)

// laptop is one machine of the fleet: its disk, its identity and the boot
// record of its last boot (what /run/dockroot/boot.json held, which
// `dockroot update` reads to protect the running and last good images).
type laptop struct {
	Name     string
	UUID     string
	Disk     string
	BootJSON string
}

// fleetBoot is what one boot of a laptop showed.
type fleetBoot struct {
	Version, Hostname, Common, UUID string
	MarkedGood                      bool
	Record                          *bootrecord.Record
	Console                         string
}

// fleetWorld is the admin's side (registry, dockerd, the image's common
// part) and the mount point every laptop disk is mounted at on the host,
// one at a time: the menu record `dockroot menu -o` writes names absolute
// paths, which must stay the same from update to update.
type fleetWorld struct {
	Registry string
	Ref      string
	Admin    *testenv.Dockerd
	Product  *vmkit.Product
	Mnt      string
}

// TestFleetUpdate: v1 is pushed and installed with `dockroot update` on a
// fresh disk, which both laptops get a copy of. Each boots v1 with its own
// hostname from fleet/machines/%u and the shared fleet/common. The admin
// pushes v2-bad; laptop A updates (laptop B is off that day), its v1
// survives `docker image prune -a`, it boots v2-bad once, which never marks
// itself good, and its next power-on falls back to v1 on its own. The admin
// pushes v2; both update, and each boots v2 at its next power-on with its
// identity kept.
func TestFleetUpdate(t *testing.T) {
	testenv.RequireVM(t)
	testenv.RequireRoot(t, "dockerd", "docker", "depmod", "docker-registry")
	p, k := product(t), Kernel(t)

	w := &fleetWorld{Registry: testenv.StartRegistry(t), Product: p, Mnt: filepath.Join(t.TempDir(), "top")}
	w.Ref = w.Registry + "/fleet/desk:stable"
	admin := testenv.NewBtrfs(t, 2048, "admin")
	w.Admin = testenv.StartDockerd(t, filepath.Join(admin.Mnt, "docker"))
	if err := fleetBaseImage(w.Admin, k, p, "fleet/base"); err != nil {
		t.Fatal(err)
	}
	v1 := w.push(t, "v1", "good")

	a := &laptop{Name: "laptop-a", UUID: "6b1c0d2e-5a1f-4c3e-9f00-00000000000a"}
	b := &laptop{Name: "laptop-b", UUID: "6b1c0d2e-5a1f-4c3e-9f00-00000000000b"}
	pristine := filepath.Join(t.TempDir(), "laptop.img")
	if err := vmkit.MakeImage(pristine, 1536, "btrfs", rootLabel, ""); err != nil {
		t.Fatal(err)
	}
	w.withLaptop(t, pristine, func(top string, d *testenv.Dockerd) {
		// The laptop's first install, as the README has it: update, then
		// its menu once.
		for _, dir := range []string{fleetBootDir, fleetESP} {
			if err := os.MkdirAll(filepath.Join(top, dir), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		out := w.dockroot(t, "update", w.Ref, "--docker-host", "unix://"+d.Socket, "--boot-dir", filepath.Join(top, fleetBootDir),
			"--boot-json", filepath.Join(top, "no-boot.json"), "--init", p.Init)
		if !strings.Contains(out, "staged for the next boot") {
			t.Fatalf("first update did not stage v1:\n%s", out)
		}
		w.dockroot(t, "menu", "--bootloader", "systemd-boot", "--root", "LABEL="+rootLabel, "--rwlayer", fleetRWLayer,
			"--docker-path", dockerPath, "--toplayer-path", fleetToplayer, "--append", "dockroot.tries=1",
			"--boot-dir", filepath.Join(top, fleetBootDir), "--loader-path", "/dockroot", "-o", filepath.Join(top, fleetESP))
		var files []vmkit.File
		files = append(files, vmkit.File{Path: "fleet/common/etc/fleet-common", Data: "shared\n"})
		for _, l := range []*laptop{a, b} {
			files = append(files, vmkit.File{Path: "fleet/machines/" + l.UUID + "/etc/hostname", Data: l.Name + "\n"})
		}
		if err := vmkit.WriteFiles(top, files); err != nil {
			t.Fatal(err)
		}
	})
	for _, l := range []*laptop{a, b} {
		l.Disk = copyDisk(t, pristine)
		l.Disk = renameDisk(t, l.Disk, l.Name+".img")
		l.BootJSON = filepath.Join(t.TempDir(), l.Name+"-boot.json")
	}

	for _, l := range []*laptop{a, b} {
		got := w.boot(t, l)
		w.check(t, l, got, "v1", v1, true)
	}

	t.Log("the admin pushes v2-bad; laptop A updates, laptop B is off")
	bad := w.push(t, "v2-bad", "bad")
	w.withLaptop(t, a.Disk, func(top string, d *testenv.Dockerd) {
		out := w.update(t, a, top, d)
		if !strings.Contains(out, "staged for the next boot: image "+shortID(bad)) {
			t.Fatalf("update did not stage v2-bad %s:\n%s", shortID(bad), out)
		}
		out = w.dockroot(t, "status", "--boot-json", a.BootJSON, "--boot-dir", filepath.Join(top, fleetBootDir))
		if !strings.Contains(out, "staged") || !strings.Contains(out, shortID(bad)) {
			t.Errorf("status does not show v2-bad staged:\n%s", out)
		}
		t.Logf("docker image prune -a -f:\n%s", d.Docker(t, "image", "prune", "-a", "-f"))
		if _, err := d.Run(nil, "image", "inspect", v1); err != nil {
			t.Fatalf("docker image prune -a deleted v1, the running and last good image: %v", err)
		}
		// prune -a strips the staged image's second tag; the next update
		// (the daily timer) tags it again, as the README says.
		out = w.update(t, a, top, d)
		if !strings.Contains(out, w.Ref+": unchanged") {
			t.Errorf("update after prune -a: want unchanged:\n%s", out)
		}
		if got := d.Docker(t, "image", "inspect", "--format", "{{.Id}}", w.Ref); got != bad {
			t.Fatalf("after update %s names %s, want v2-bad %s", w.Ref, got, bad)
		}
	})
	got := w.boot(t, a)
	w.check(t, a, got, "v2-bad", bad, false)
	if bc := got.Record.BootCount; bc == nil || bc.Attempt != 1 || bc.FellBack || bc.LastGood == nil || bc.LastGood.ID != v1 {
		t.Errorf("laptop-a's boot of v2-bad: boot_count %+v, want attempt 1 with v1 last good", bc)
	}
	got = w.boot(t, a)
	w.check(t, a, got, "v1", v1, true)
	if bc := got.Record.BootCount; bc == nil || !bc.FellBack || bc.Requested.ID != bad {
		t.Errorf("laptop-a's next power-on: boot_count %+v, want a fallback from v2-bad to v1", bc)
	}
	if !strings.Contains(got.Console, "dockroot: !!! FALLING BACK: ") {
		t.Errorf("laptop-a's fallback is not on its console:\n%s", vmkit.Tail(got.Console, 60))
	}

	t.Log("the admin pushes v2; both laptops update")
	v2 := w.push(t, "v2", "good")
	for _, l := range []*laptop{a, b} {
		w.withLaptop(t, l.Disk, func(top string, d *testenv.Dockerd) {
			out := w.update(t, l, top, d)
			if !strings.Contains(out, "staged for the next boot: image "+shortID(v2)) {
				t.Fatalf("%s: update did not stage v2 %s:\n%s", l.Name, shortID(v2), out)
			}
			if entry := readESPEntry(t, top, w.Ref); !strings.Contains(entry, "docker_image="+w.Ref) {
				t.Errorf("%s: the rewritten entry does not boot %s:\n%s", l.Name, w.Ref, entry)
			}
		})
	}
	for _, l := range []*laptop{a, b} {
		got := w.boot(t, l)
		w.check(t, l, got, "v2", v2, true)
		if bc := got.Record.BootCount; bc == nil || bc.FellBack || bc.LastGood == nil || bc.LastGood.ID != v1 {
			t.Errorf("%s's boot of v2: boot_count %+v, want v2 tried with v1 as last good", l.Name, bc)
		}
	}
}

// push builds version on the admin's dockerd from the fleet base, healthy
// ("good": its init runs mark-good) or not, pushes it as w.Ref and returns
// its image ID.
func (w *fleetWorld) push(t *testing.T, version, health string) string {
	t.Helper()
	if err := vmkit.Build(w.Admin, w.Ref, []string{"FROM fleet/base", "COPY rootfs/ /"}, []vmkit.File{
		{Path: "rootfs/etc/fleet-version", Data: version + "\n"},
		{Path: "rootfs/etc/fleet-health", Data: health + "\n"},
	}); err != nil {
		t.Fatal(err)
	}
	w.Admin.Docker(t, "push", w.Ref)
	id := w.Admin.Docker(t, "image", "inspect", "--format", "{{.Id}}", w.Ref)
	t.Logf("pushed %s as %s: %s", version, w.Ref, id)
	return id
}

// withLaptop mounts a laptop's disk (never while its VM runs), starts a
// private dockerd on its Docker data root, as the laptop's own dockerd
// would run, and stops both after fn.
func (w *fleetWorld) withLaptop(t *testing.T, disk string, fn func(top string, d *testenv.Dockerd)) {
	t.Helper()
	m, err := vmkit.MountImage(disk, w.Mnt, "btrfs")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Close(); err != nil {
			t.Errorf("unmount %s: %v", disk, err)
		}
	}()
	d, err := testenv.StartDockerdProcess(filepath.Join(m.Dir, dockerPath), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stop the laptop's dockerd: %v", err)
		}
	}()
	fn(m.Dir, d)
}

// update is the daily `dockroot update` of laptop l, reading the boot
// record of its last boot.
func (w *fleetWorld) update(t *testing.T, l *laptop, top string, d *testenv.Dockerd) string {
	t.Helper()
	return w.dockroot(t, "update", "--docker-host", "unix://"+d.Socket, "--boot-dir", filepath.Join(top, fleetBootDir),
		"--boot-json", l.BootJSON, "--init", w.Product.Init)
}

// dockroot runs the CLI built from this checkout on the host and fails t
// when it fails.
func (w *fleetWorld) dockroot(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(w.Product.CLI, args...).CombinedOutput()
	t.Logf("dockroot %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("dockroot %s: %v", args[0], err)
	}
	return string(out)
}

// boot powers laptop l on the way its firmware would: systemd-boot's entry
// for w.Ref, that is the kernel and initramfs `dockroot update` installed
// and the entry's command line, and the machine's UUID. It keeps the boot
// record the guest printed in l.BootJSON.
func (w *fleetWorld) boot(t *testing.T, l *laptop) fleetBoot {
	t.Helper()
	files := t.TempDir()
	var options string
	inspect(t, l.Disk, "btrfs", func(top string) error {
		entry := readESPEntry(t, top, w.Ref)
		m := regexp.MustCompile(`(?m)^options (.*)$`).FindStringSubmatch(entry)
		if m == nil {
			t.Fatalf("%s: no options line in the entry of %s:\n%s", l.Name, w.Ref, entry)
		}
		options = m[1]
		dir := bootmenu.InstalledDir(filepath.Join(top, fleetBootDir), w.Ref)
		for _, f := range []string{bootmenu.KernelFile, bootmenu.InitrdFile} {
			if err := vmkit.CopyImage(filepath.Join(dir, f), filepath.Join(files, f)); err != nil {
				return err
			}
		}
		return nil
	})
	vm := Boot(t, vmkit.Options{
		Kernel: filepath.Join(files, bootmenu.KernelFile),
		Initrd: filepath.Join(files, bootmenu.InitrdFile),
		Append: options,
		Drives: []vmkit.Drive{{File: l.Disk}},
		UUID:   l.UUID,
	})
	expect(t, vm, "FLEET-MARKER", busyboxBoot)
	expect(t, vm, "FLEET-DONE", 60*time.Second)
	if err := vm.WaitExit(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	console := vm.Console.String()
	m := fleetMarkerRE.FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("%s: no FLEET-MARKER line:\n%s", l.Name, vmkit.Tail(console, 40))
	}
	rec := fullRecord(t, console, "FLEET-BOOTJSON-BEGIN", "FLEET-BOOTJSON-END")
	if err := bootrecord.Write(l.BootJSON, rec); err != nil {
		t.Fatal(err)
	}
	return fleetBoot{Version: m[1], Hostname: m[2], Common: m[3], UUID: m[4],
		MarkedGood: strings.Contains(console, "FLEET-MARKED-GOOD"), Record: rec, Console: console}
}

// check fails t unless laptop l booted version (image id) as itself: its
// hostname from fleet/machines/%u, the shared file from fleet/common, and
// marked good exactly when the image is healthy.
func (w *fleetWorld) check(t *testing.T, l *laptop, got fleetBoot, version, id string, good bool) {
	t.Helper()
	if got.Version != version || got.Record.ImageID != id {
		t.Fatalf("%s booted %s (%s), want %s (%s):\n%s", l.Name, got.Version, got.Record.ImageID, version, id, vmkit.Tail(got.Console, 40))
	}
	if got.Hostname != l.Name || got.Common != "shared" || got.UUID != l.UUID {
		t.Errorf("%s booted as hostname %q, common %q, uuid %q; want %s, shared, %s (toplayer_path=%s)",
			l.Name, got.Hostname, got.Common, got.UUID, l.Name, l.UUID, fleetToplayer)
	}
	if got.MarkedGood != good {
		t.Errorf("%s's boot of %s: marked good %v, want %v:\n%s", l.Name, version, got.MarkedGood, good, vmkit.Tail(got.Console, 30))
	}
}

// readESPEntry returns the systemd-boot entry that boots ref (not its
// previous-layer entry) from the ESP on the mounted top level.
func readESPEntry(t *testing.T, top, ref string) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(top, fleetESP, bootmenu.BLSDir, "*.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, string(data))
		s := string(data)
		if strings.Contains(s, "docker_image="+ref+" ") || strings.HasSuffix(strings.TrimSpace(s), "docker_image="+ref) {
			if !strings.Contains(s, "dockroot.layer=") {
				return s
			}
		}
	}
	t.Fatalf("no systemd-boot entry for %s in %s:\n%s", ref, filepath.Join(top, fleetESP), strings.Join(all, "\n"))
	return ""
}

// fleetBaseImage builds ref on d: busybox, Debian's kernel with the
// modules a VM's boot needs (virtio, btrfs and what they depend on) as
// `dockroot install` finds them in an image, the dockroot CLI for
// mark-good, and fleetInit.
func fleetBaseImage(d *testenv.Dockerd, k *vmkit.Kernel, p *vmkit.Product, ref string) error {
	if err := vmkit.ImportBusybox(d, "vmtest/busybox:base"); err != nil {
		return err
	}
	ctx, err := os.MkdirTemp("", "fleet-base-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctx)
	mods := filepath.Join("lib", "modules", k.Version)
	if err := os.MkdirAll(filepath.Join(ctx, mods), 0o755); err != nil {
		return err
	}
	// A subset of the package's 390 MB: the disk and filesystem drivers
	// and the libraries and ciphers they need.
	copyArgs := []string{"cp", "-a", "--parents", "modules.builtin", "modules.builtin.modinfo", "modules.order",
		"kernel/fs/btrfs", "kernel/drivers/block", "kernel/drivers/virtio", "kernel/lib", "kernel/crypto", "kernel/arch",
		filepath.Join(ctx, mods)}
	cp := exec.Command(copyArgs[0], copyArgs[1:]...)
	cp.Dir = k.ModulesDir()
	if out, err := cp.CombinedOutput(); err != nil {
		return fmt.Errorf("copy modules from %s: %s: %w\n%s", cp.Dir, strings.Join(copyArgs, " "), err, out)
	}
	if _, err := testenv.Output("depmod", "-b", ctx, k.Version); err != nil {
		return err
	}
	cli, err := os.ReadFile(p.CLI)
	if err != nil {
		return err
	}
	vmlinuz, err := os.ReadFile(k.Vmlinuz)
	if err != nil {
		return err
	}
	if err := vmkit.WriteFiles(ctx, []vmkit.File{
		{Path: "boot/vmlinuz-" + k.Version, Data: string(vmlinuz)},
		{Path: "rootfs/sbin/init", Mode: 0o755, Data: fleetInit},
		{Path: "rootfs/usr/bin/dockroot", Mode: 0o755, Data: string(cli)},
		{Path: "Dockerfile", Data: strings.Join([]string{
			"FROM vmtest/busybox:base",
			"COPY boot /boot",
			"COPY lib/modules /lib/modules",
			"COPY rootfs/ /",
			"",
		}, "\n")},
	}); err != nil {
		return err
	}
	_, err = d.Run(nil, "build", "--quiet", "--tag", ref, ctx)
	return err
}

// renameDisk gives a disk copy its laptop's name, so the two are told
// apart in QEMU's argv and the logs.
func renameDisk(t *testing.T, disk, name string) string {
	t.Helper()
	to := filepath.Join(filepath.Dir(disk), name)
	if err := os.Rename(disk, to); err != nil {
		t.Fatal(err)
	}
	return to
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
