package vm

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// busyboxBoot is how long a busybox image may take from power-on to its
// marker under TCG; it usually takes under ten seconds.
const busyboxBoot = 120 * time.Second

// bootDesk boots disk with the shared initramfs and params, waits for the
// desk image's marker and for the guest to power off, and returns the
// console.
func bootDesk(t *testing.T, params string, drives ...vmkit.Drive) string {
	t.Helper()
	vm := Boot(t, vmkit.Options{Initrd: initramfs(t), Append: params, Drives: drives})
	expect(t, vm, "DOCKROOT-MARKER", busyboxBoot)
	expect(t, vm, "DOCKROOT-BOOTJSON-END", 30*time.Second)
	if err := vm.WaitExit(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	return vm.Console.String()
}

// Case 1: the ancestor's parameters, with the image from the ancestor's
// /etc/docker-btrfs.json, baked in. The image's init runs as PID 1, sees the top layer's
// hostname, and the console shows every step's timing.
func TestBootAncestorParams(t *testing.T) {
	testenv.RequireVM(t)
	disk := deskDisk(t)
	console := bootDesk(t, ancestorParam, vmkit.Drive{File: disk})

	m := parseMarker(t, console)
	if m.Image != bakedImage || m.Hostname != toplayerHost || m.PID != "1" {
		t.Errorf("booted system: image=%s hostname=%s pid=%s; want image=%s (baked docker-btrfs.json) hostname=%s (top layer) pid=1",
			m.Image, m.Hostname, m.PID, bakedImage, toplayerHost)
	}
	if want := "image=" + bakedImage + " (from /etc/docker-btrfs.json)"; !strings.Contains(console, want) {
		t.Errorf("console does not say where the image came from (%q)", want)
	}
	timings := stepTimings(console)
	if len(timings) < 5 {
		t.Errorf("console shows %d step timings (\"done in N ms\"), want one per step:\n%s", len(timings), strings.Join(timings, "\n"))
	}
	rec := parseBootJSON(t, console)
	if !strings.HasSuffix(rec.Ref, bakedImage) || rec.ImageID == "" || rec.Layer.Subvolume != rwLayer || rec.Layer.SubvolID == 0 ||
		rec.Toplayer == nil || rec.Toplayer.Path != toplayerPath || len(rec.Steps) == 0 || rec.Version == "" {
		t.Errorf("boot.json = %+v; want ref %s, an image ID, rw layer %s with its ID, top layer %s, steps and a version",
			rec, bakedImage, rwLayer, toplayerPath)
	}
	t.Logf("step timings:\n%s", strings.Join(timings, "\n"))

	// The initramfs is built with the default --modules alias: the init
	// loads what the VM's devices match, fewer than the whole list, and
	// still reaches the image's init (the marker above).
	mod := modulesStep(t, console)
	if mod.loaded >= mod.packed || mod.matched == 0 || mod.devices <= mod.matched {
		t.Errorf("modules step: %d of %d modules for %d of %d devices; want fewer modules than the %d packed, loaded for some but not all devices",
			mod.loaded, mod.packed, mod.matched, mod.devices, mod.packed)
	}
	t.Logf("modules step (alias): %d of %d modules for %d of %d devices in %d ms", mod.loaded, mod.packed, mod.matched, mod.devices, mod.ms)
}

// modulesLine is the modules step's "done" line of --modules alias|hostonly.
var modulesLine = regexp.MustCompile(`load kernel modules \(optional\): done in (\d+) ms: (\d+) of (\d+) modules for (\d+) of (\d+) devices`)

type modulesDone struct{ ms, loaded, packed, matched, devices int }

// modulesStep reads the modules step's line from a console.
func modulesStep(t *testing.T, console string) modulesDone {
	t.Helper()
	m := modulesLine.FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("no \"load kernel modules: done ... N of M modules for D of E devices\" line on the console:\n%s", vmkit.Tail(console, 60))
	}
	n := make([]int, 5)
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	return modulesDone{n[0], n[1], n[2], n[3], n[4]}
}

// Case 2: whatever boot 1 writes into / is gone at boot 2, and kept in
// NAME.prev.1.
func TestFreshEveryBoot(t *testing.T) {
	testenv.RequireVM(t)
	disk := deskDisk(t)

	console1 := bootDesk(t, ancestorParam, vmkit.Drive{File: disk})
	first := parseMarker(t, console1)
	console := bootDesk(t, ancestorParam, vmkit.Drive{File: disk})
	second := parseMarker(t, console)
	if first.BootID == second.BootID {
		t.Fatalf("both boots report boot_id %s; the second boot did not happen", first.BootID)
	}
	if strings.Contains(console, "DOCKROOT-STALE") || !strings.Contains(console, "DOCKROOT-FRESH") {
		t.Errorf("boot 2 sees the file boot 1 wrote into /:\n%s", vmkit.Tail(console, 20))
	}
	// Boot 2 made its layer from the base boot 1 kept (same image, same
	// top layer), and it is still fresh (checked above).
	checkBaseReused(t, parseBootJSON(t, console1), parseBootJSON(t, console), console)
	inspect(t, disk, "btrfs", func(top string) error {
		for _, c := range []struct{ layer, want string }{
			{rwLayer + ".prev.1", first.BootID},
			{rwLayer, second.BootID},
		} {
			data, err := os.ReadFile(filepath.Join(top, c.layer, "left-by-previous-boot"))
			if err != nil {
				t.Errorf("after two boots: %v", err)
			} else if got := strings.TrimSpace(string(data)); got != c.want {
				t.Errorf("%s/left-by-previous-boot = %s, want boot_id %s", c.layer, got, c.want)
			}
		}
		return nil
	})
}

// Case 3: docker_image= on the command line selects another tag over the
// baked config.
func TestSelectTag(t *testing.T) {
	testenv.RequireVM(t)
	disk := deskDisk(t)
	console := bootDesk(t, ancestorParam+" docker_image=desk:2", vmkit.Drive{File: disk})
	if m := parseMarker(t, console); m.Image != "desk:2" {
		t.Errorf("booted image=%s, want desk:2 (docker_image= on the command line)", m.Image)
	}
	if rec := parseBootJSON(t, console); !strings.HasSuffix(rec.Ref, "desk:2") {
		t.Errorf("boot.json ref = %q, want desk:2", rec.Ref)
	}
}

// Case 4: the top layer comes from a second disk, ext4, as the ancestor
// allowed by pointing toplayer= elsewhere.
func TestToplayerOnSecondDisk(t *testing.T) {
	testenv.RequireVM(t)
	disk := deskDisk(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	const host = "second-disk-host"
	if err := vmkit.WriteFiles(src, []vmkit.File{{Path: "machine/etc/hostname", Data: host + "\n"}}); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top.img")
	if err := vmkit.MakeImage(top, 32, "ext4", "top", src); err != nil {
		t.Fatal(err)
	}
	params := "root=LABEL=linux rootflags=subvol=docker_rwlayer rw docker_path=docker toplayer=LABEL=top toplayerfstype=ext4 toplayer_path=machine"
	var recs []*bootRecord
	var console string
	for boot := 1; boot <= 2; boot++ {
		console = bootDesk(t, params, vmkit.Drive{File: disk}, vmkit.Drive{File: top})
		if m := parseMarker(t, console); m.Hostname != host {
			t.Errorf("boot %d: hostname=%s, want %s from the second disk's top layer", boot, m.Hostname, host)
		}
		rec := parseBootJSON(t, console)
		if rec.Toplayer == nil || !strings.Contains(rec.Toplayer.Device, "vdb") {
			t.Fatalf("boot %d: boot.json toplayer = %+v, want device /dev/vdb", boot, rec.Toplayer)
		}
		recs = append(recs, rec)
	}
	// The ext4 top layer's fingerprint is the same across boots (the device
	// is mounted afresh each time), so boot 2 uses boot 1's base.
	checkBaseReused(t, recs[0], recs[1], console)
}

// checkBaseReused checks that the first boot copied the top layer and kept
// a prepared base, and that the second made its layer from that base.
func checkBaseReused(t *testing.T, first, second *bootRecord, console2 string) {
	t.Helper()
	if first.Toplayer == nil || second.Toplayer == nil {
		t.Fatalf("boot.json has no top layer: %+v, %+v", first.Toplayer, second.Toplayer)
	}
	if f := first.Toplayer; f.Reused || f.Summary.Files == 0 || !strings.HasPrefix(f.Base, ".dockroot/bases/") {
		t.Errorf("boot 1: top layer %+v, want it copied and a base kept", *f)
	}
	if s := second.Toplayer; !s.Reused || s.Base != first.Toplayer.Base || s.Summary.Files != 0 {
		t.Errorf("boot 2: top layer %+v, want boot 1's base %s reused and nothing copied", *s, first.Toplayer.Base)
	}
	if !strings.Contains(console2, "from the prepared base") {
		t.Errorf("boot 2's console does not say the layer came from the prepared base:\n%s", vmkit.Tail(console2, 40))
	}
}

// Case 5: a missing image fails the boot with a message naming the image
// and listing the tags there are, then applies dockroot.onfail=halt;
// nothing panics.
func TestMissingImage(t *testing.T) {
	testenv.RequireVM(t)
	disk := deskDisk(t)
	vm := Boot(t, vmkit.Options{
		Initrd:   initramfs(t),
		Append:   ancestorParam + " docker_image=nosuch:1 dockroot.onfail=halt",
		Drives:   []vmkit.Drive{{File: disk}},
		Failures: vmkit.CrashFailures,
	})
	expect(t, vm, "dockroot: BOOT FAILED", busyboxBoot)
	// dockroot.onfail=halt powers off (so that a halted machine does not
	// hang on), which ends QEMU; the kernel's own line says so.
	if err := vm.WaitExit(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	expect(t, vm, "reboot: Power down", time.Second)
	console := strings.ReplaceAll(vm.Console.String(), "\r", "")
	_, failure, _ := strings.Cut(console, "dockroot: BOOT FAILED")
	for _, want := range []string{"nosuch:1", "desk:1", "desk:2"} {
		if !strings.Contains(failure, want) {
			t.Errorf("the failure message does not name %s:\n%s", want, vmkit.Tail(console, 30))
		}
	}
	if strings.Contains(console, "DOCKROOT-MARKER") {
		t.Error("an image booted although docker_image= names none")
	}
}

var initramfsAllOnce once[string]

// initramfsAll is initramfs() built with --modules all: the whole list,
// loaded one after another, as before the module table.
func initramfsAll(t *testing.T) string {
	p, k := product(t), Kernel(t)
	return initramfsAllOnce.get(t, "initramfs --modules all", func() (string, error) {
		conf := filepath.Join(work, "docker-btrfs-all.json")
		name, tag, _ := strings.Cut(bakedImage, ":")
		if err := os.WriteFile(conf, []byte(`{"docker_image": "`+name+`", "docker_tag": "`+tag+`"}`+"\n"), 0o644); err != nil {
			return "", err
		}
		out := filepath.Join(work, "initramfs-all.img")
		_, err := p.Initramfs(k, out, "--docker-btrfs-json", conf, "--module", "ext4", "--modules", "all")
		return out, err
	})
}

var allModulesLine = regexp.MustCompile(`load kernel modules \(optional\): done in (\d+) ms: (\d+ [a-z ]+(, \d+ [a-z ]+)*)`)

// The same disk boots with --modules all and with the default alias, one
// boot each: both reach the image's init, alias loads fewer modules, and
// the test logs both modules-step durations.
func TestModulesAliasVsAll(t *testing.T) {
	testenv.RequireFullVM(t, "two boots comparing --modules all and alias")
	disk := deskDisk(t)
	vm := Boot(t, vmkit.Options{Initrd: initramfsAll(t), Append: ancestorParam, Drives: []vmkit.Drive{{File: disk}}})
	expect(t, vm, "DOCKROOT-MARKER", busyboxBoot)
	expect(t, vm, "DOCKROOT-BOOTJSON-END", 30*time.Second)
	if err := vm.WaitExit(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	all := vm.Console.String()
	m := allModulesLine.FindStringSubmatch(all)
	if m == nil {
		t.Fatalf("--modules all: no \"load kernel modules: done in N ms: N loaded\" line:\n%s", vmkit.Tail(all, 60))
	}
	allMS, _ := strconv.Atoi(m[1])
	allLoaded := 0 // every outcome: loaded, already loaded, no matching device, ...
	for _, n := range regexp.MustCompile(`\d+`).FindAllString(m[2], -1) {
		v, _ := strconv.Atoi(n)
		allLoaded += v
	}

	alias := modulesStep(t, bootDesk(t, ancestorParam, vmkit.Drive{File: disk}))
	if alias.loaded >= allLoaded || allLoaded != alias.packed {
		t.Errorf("--modules all loaded %d; alias loaded %d of %d packed: want all to load the whole list and alias fewer", allLoaded, alias.loaded, alias.packed)
	}
	t.Logf("modules step: all %d modules in %d ms; alias %d modules (%d of %d devices matched) in %d ms",
		allLoaded, allMS, alias.loaded, alias.matched, alias.devices, alias.ms)
}
