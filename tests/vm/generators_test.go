package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// hooked is a distribution's initramfs with dockroot's hook inside, as a
// generator built it, and what its console says at the points the
// generator tests check: the shared boot-and-check code of the dracut and
// mkinitcpio tests.
type hooked struct {
	kernel, initrd string
	// mountedRoot is the generator's console line saying it mounted root=
	// (after dockroot handed the root over).
	mountedRoot string
	// emergency is the generator's console line entering its emergency
	// shell.
	emergency string
}

// boot boots disk with cmdline, waits for the image's marker and
// power-off, and checks that the image's systemd reached
// multi-user.target. It returns the console without terminal escapes, the
// marker's fields (itoolsMarkerRE) and boot.json (nil when the marker
// says there is none), which is read from the console as it came (parseBootJSON drops the status lines systemd prints
// in its middle by their escapes).
func (h hooked) boot(t *testing.T, disk, cmdline string) (string, []string, *bootRecord) {
	t.Helper()
	start := time.Now()
	vm := Boot(t, vmkit.Options{Kernel: h.kernel, Initrd: h.initrd, Append: cmdline, Drives: []vmkit.Drive{{File: disk}}})
	expect(t, vm, "DOCKROOT-BOOTJSON-END", 900*time.Second)
	if err := vm.WaitExit(180 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot to power-off in %v", time.Since(start).Round(time.Second))
	console := plainConsole(vm)
	// A slow boot makes systemd print "A start job is running" status
	// lines between the marker's fields: look for it on the lines that
	// had no terminal escapes.
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(vm.Console.String(), "\r", ""), "\n") {
		if !strings.Contains(l, "\x1b[") || strings.Contains(l, "DOCKROOT-") {
			lines = append(lines, l)
		}
	}
	m := itoolsMarkerRE.FindStringSubmatch(strings.Join(lines, "\n"))
	if m == nil {
		t.Fatalf("marker line incomplete:\n%s", vmkit.Tail(console, 40))
	}
	if m[1] != "active" || m[2] != "systemd" {
		t.Errorf("booted Debian: multi-user.target %s, PID 1 %s; want active, systemd", m[1], m[2])
	}
	if m[5] != "yes" {
		return console, m, nil // no image: dockroot wrote no boot.json
	}
	return console, m, parseBootJSON(t, vm.Console.String())
}

// checkFresh checks boot i of the image with docker_image= given: the top
// layer set the hostname to host, no earlier boot's file is in /,
// dockroot's step lines are on the console and in `journalctl -b`
// (printk.devkmsg=on), and boot.json names a fresh rw layer with the top
// layer.
func checkFresh(t *testing.T, i int, console string, m []string, rec *bootRecord, host string) {
	t.Helper()
	if m[3] != host || m[5] != "yes" {
		t.Errorf("boot %d: hostname %s, boot.json %s; want %s (the top layer) and yes", i, m[3], m[5], host)
	}
	if m[4] != "none" {
		t.Errorf("boot %d: found boot %s's file in /: the rw layer is not fresh", i, m[4])
	}
	for _, line := range []string{
		"dockroot: [1/15] mount the pseudo filesystems: done in",
		"dockroot: [13/15] commit the rw layer: done in",
		handedOver,
	} {
		if !strings.Contains(console, line) {
			t.Errorf("boot %d: the console lacks %q", i, line)
		}
	}
	if js := journalRE.FindStringSubmatch(console); js == nil || js[1] != "15" || js[2] != "1" {
		t.Errorf("boot %d: journalctl -b lacks the 15 dockroot steps' starting lines and the summary (%v)", i, js)
	}
	switch {
	case rec == nil:
		t.Errorf("boot %d: no boot.json", i)
	case rec.Layer.Subvolume != rwLayer || !rec.Layer.Fresh || rec.Toplayer == nil || rec.Toplayer.Summary.Files == 0 && !rec.Toplayer.Reused:
		t.Errorf("boot %d: boot.json rw layer %+v, top layer %+v", i, rec.Layer, rec.Toplayer)
	}
}

// handedOver is dockroot's last step line in hook mode.
const handedOver = "dockroot: [15/15] hand the root over to the distribution's initramfs: done in"

// checkPrevOne checks that docker_rwlayer.prev.1 on disk holds the file
// the boot with boot ID id left.
func checkPrevOne(t *testing.T, disk, id string) {
	t.Helper()
	inspect(t, disk, "btrfs", func(top string) error {
		b, err := os.ReadFile(filepath.Join(top, rwLayer+".prev.1", "left-by-previous-boot"))
		if err != nil {
			return fmt.Errorf("boot %s's file in %s.prev.1: %w", id, rwLayer, err)
		}
		if got := strings.TrimSpace(string(b)); got != id {
			t.Errorf("%s.prev.1 holds boot %s's file, want %s's", rwLayer, got, id)
		}
		return nil
	})
}

// noImage boots disk with a command line that names no image: the hook
// says it has nothing to do and runs no step, and the generator mounts
// rootflags=subvol=docker_rwlayer as it is, so / holds the file of the
// boot with boot ID lastID.
func (h hooked) noImage(t *testing.T, disk, lastID string) {
	t.Helper()
	console, m, _ := h.boot(t, disk, "root=LABEL="+rootLabel+" rootflags=subvol="+rwLayer+" rw init=/lib/systemd/systemd")
	if !strings.Contains(console, "nothing to do: no docker_image=") {
		t.Errorf("the hook did not say it had nothing to do:\n%s", vmkit.Tail(console, 60))
	}
	if strings.Contains(console, "dockroot: [1/") {
		t.Errorf("the hook ran steps without an image")
	}
	if m[4] != lastID {
		t.Errorf("without an image, / holds boot %s's file, want %s's: the generator did not boot the layer as it was", m[4], lastID)
	}
}

// missingImage boots disk with docker_image=nosuch:1, twice: with
// dockroot.onfail=halt dockroot shows the failure, naming the image and
// the tags there are (want), and powers off before the generator mounts
// anything; with the default dockroot.onfail=shell the generator's
// emergency shell follows. Neither boot changes the btrfs top level or
// docker_rwlayer.
func (h hooked) missingImage(t *testing.T, disk string, want ...string) {
	t.Helper()
	before := topLevel(t, disk)
	lastID := bootIDOf(t, disk)
	nothingDeleted := func() {
		t.Helper()
		if after := topLevel(t, disk); !slices.Equal(after, before) {
			t.Errorf("the failed boot changed the btrfs top level: %v, was %v", after, before)
		}
		if id := bootIDOf(t, disk); id != lastID {
			t.Errorf("%s holds boot %s's file after the failed boot, want %s's as it was", rwLayer, id, lastID)
		}
	}
	const params = ancestorParam + " docker_image=nosuch:1 init=/lib/systemd/systemd"

	vm := Boot(t, vmkit.Options{
		Kernel: h.kernel, Initrd: h.initrd,
		Append:   params + " dockroot.onfail=halt",
		Drives:   []vmkit.Drive{{File: disk}},
		Failures: vmkit.CrashFailures,
	})
	expect(t, vm, "dockroot: BOOT FAILED", 900*time.Second)
	if err := vm.WaitExit(180 * time.Second); err != nil {
		t.Fatal(err)
	}
	console := plainConsole(vm)
	_, failure, _ := strings.Cut(console, "dockroot: BOOT FAILED")
	for _, w := range append([]string{"nosuch:1", "dockroot.onfail=halt: powering off", "reboot: Power down"}, want...) {
		if !strings.Contains(failure, w) {
			t.Errorf("after the failure the console lacks %q:\n%s", w, vmkit.Tail(console, 30))
		}
	}
	if strings.Contains(console, h.mountedRoot) || strings.Contains(console, "DOCKROOT-MARKER") {
		t.Errorf("the generator mounted root= (%q) or the image booted although dockroot failed:\n%s", h.mountedRoot, vmkit.Tail(console, 40))
	}
	nothingDeleted()

	// Under load dracut's emergency.target took minutes to start after
	// the failure (the unit's OnFailure= isolates it, stopping every
	// other initrd unit first).
	vm = Boot(t, vmkit.Options{
		Kernel: h.kernel, Initrd: h.initrd,
		Append:   params,
		Drives:   []vmkit.Drive{{File: disk}},
		Failures: vmkit.CrashFailures,
	})
	expect(t, vm, "dockroot: BOOT FAILED", 900*time.Second)
	start := time.Now()
	expect(t, vm, h.emergency, 900*time.Second)
	t.Logf("emergency shell %v after the failure", time.Since(start).Round(time.Second))
	vm.Kill()
	if strings.Contains(plainConsole(vm), h.mountedRoot) {
		t.Errorf("the generator mounted root= (%q) although dockroot failed", h.mountedRoot)
	}
	nothingDeleted()
}

// journalRE is the marker's count of dockroot's step lines and summary in
// `journalctl -b`.
var journalRE = regexp.MustCompile(`DOCKROOT-JOURNAL steps=(\d+) summary=(\d+)`)
