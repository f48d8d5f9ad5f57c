package vm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/hook"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// The reliability cases of issue 4 that need a real boot: the boot menu's
// previous-layer entry, boot counting with the real `dockroot mark-good`,
// the hibernation guard with a real swap area, and a console that shows
// every dockroot line once.

// kernelTimestamp is the "[    2.342290] " the kernel puts before the
// records it prints on the console.
var kernelTimestamp = regexp.MustCompile(`^\[\s*\d+\.\d+\] `)

// dockrootLines returns the console's "dockroot: " lines, the kernel's
// timestamps removed, in order.
func dockrootLines(console string) []string {
	var out []string
	for _, line := range strings.Split(strings.ReplaceAll(console, "\r", ""), "\n") {
		line = kernelTimestamp.ReplaceAllString(line, "")
		if strings.HasPrefix(line, hook.Prefix) {
			out = append(out, line)
		}
	}
	return out
}

// checkEachLineOnce fails t unless every dockroot line of a boot without
// `quiet` is on the console exactly once, whether dockroot-init printed it
// or the kernel echoed it from /dev/kmsg, and every step shows up.
func checkEachLineOnce(t *testing.T, console string) {
	t.Helper()
	count := map[string]int{}
	for _, l := range dockrootLines(console) {
		count[l]++
	}
	var twice []string
	for l, n := range count {
		if n > 1 {
			twice = append(twice, fmt.Sprintf("%dx %s", n, l))
		}
	}
	sort.Strings(twice)
	if len(twice) > 0 {
		t.Errorf("lines shown more than once on the console:\n%s", strings.Join(twice, "\n"))
	}
	steps := len(hook.Steps())
	for n := 1; n <= steps; n++ {
		prefix := fmt.Sprintf("%s[%d/%d] ", hook.Prefix, n, steps)
		found := false
		for l := range count {
			found = found || strings.HasPrefix(l, prefix)
		}
		if !found {
			t.Errorf("no %q line on the console", prefix)
		}
	}
	for _, want := range []string{"dockroot: dockroot ", "dockroot: boot steps took ", "dockroot: switch_root: exec "} {
		found := false
		for l := range count {
			found = found || strings.HasPrefix(l, want)
		}
		if !found {
			t.Errorf("no %q line on the console", want)
		}
	}
}

// fullRecord decodes the boot.json an image's init printed between
// BEGIN and END markers, as bootrecord.Record.
func fullRecord(t *testing.T, console, begin, end string) *bootrecord.Record {
	t.Helper()
	console = strings.ReplaceAll(console, "\r", "")
	_, rest, ok := strings.Cut(console, begin+"\n")
	body, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("no boot.json between %s and %s on the console:\n%s", begin, end, vmkit.Tail(console, 40))
	}
	var rec bootrecord.Record
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatalf("/run/dockroot/boot.json in the booted system: %v\n%s", err, body)
	}
	return &rec
}

func readLayerFile(t *testing.T, top, layer string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(top, layer, "left-by-previous-boot"))
	if err != nil {
		t.Errorf("%s: %v", layer, err)
		return ""
	}
	return strings.TrimSpace(string(data))
}

// layerNames lists the entries of the top level that belong to the rw
// layer NAME: NAME, NAME.prev.N and any leftovers (NAME.dockroot-tmp).
func layerNames(t *testing.T, top string) []string {
	t.Helper()
	entries, err := os.ReadDir(top)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), rwLayer) {
			out = append(out, e.Name())
		}
	}
	return out
}

// The boot menu's previous-layer entry: after a new image (boot 2) the
// user boots "the layer I used before", which is boot 1's layer with what
// boot 1 wrote, as the menu passes it (docker_image= of the current entry,
// rw, dockroot.layer=previous). Nothing is rotated or created. Every boot
// is without `quiet`, and every dockroot line is on its console once.
func TestBootPreviousLayer(t *testing.T) {
	testenv.RequireVM(t)
	disk := deskDisk(t)
	drive := vmkit.Drive{File: disk}

	c1 := bootDesk(t, ancestorParam, drive)
	first := parseMarker(t, c1)
	c2 := bootDesk(t, ancestorParam+" docker_image=desk:2", drive)
	second := parseMarker(t, c2)
	if second.Image != "desk:2" || !strings.Contains(c2, "DOCKROOT-FRESH") {
		t.Fatalf("boot 2: image %s, want a fresh desk:2:\n%s", second.Image, vmkit.Tail(c2, 20))
	}
	var before []string
	inspect(t, disk, "btrfs", func(top string) error {
		before = layerNames(t, top)
		return nil
	})

	c3 := bootDesk(t, ancestorParam+" docker_image=desk:2 dockroot.layer=previous", drive)
	third := parseMarker(t, c3)
	if third.Image != "desk:1" {
		t.Errorf("dockroot.layer=previous booted image %s, want desk:1, the layer used before desk:2", third.Image)
	}
	if !strings.Contains(c3, "DOCKROOT-STALE "+first.BootID) {
		t.Errorf("dockroot.layer=previous does not see what boot 1 (%s) wrote:\n%s", first.BootID, vmkit.Tail(c3, 20))
	}
	rec := fullRecord(t, c3, "DOCKROOT-BOOTJSON-BEGIN", "DOCKROOT-BOOTJSON-END")
	if rec.LayerMode != "previous" || rec.Layer.Subvolume != rwLayer+".prev.1" || rec.Layer.Fresh || rec.Layer.SubvolID == 0 ||
		rec.Layer.Image == "" || rec.ImageID != "" || rec.Toplayer != nil || len(rec.Layer.Rotated) != 0 {
		t.Errorf("boot.json: layer %q %+v, image %q, top layer %+v", rec.LayerMode, rec.Layer, rec.ImageID, rec.Toplayer)
	}
	for _, step := range []string{"resolve the image", "create the rw layer", "apply the top layer", "commit the rw layer"} {
		if !strings.Contains(c3, step+": skipped: booting "+rwLayer+".prev.1 as it was left") {
			t.Errorf("the console does not show %q as skipped", step)
		}
	}

	inspect(t, disk, "btrfs", func(top string) error {
		if after := layerNames(t, top); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Errorf("dockroot.layer=previous changed the layers: %v -> %v", before, after)
		}
		// Boot 2's layer is still the current one; boot 3 wrote into
		// the previous layer it booted.
		if got := readLayerFile(t, top, rwLayer); got != second.BootID {
			t.Errorf("%s holds boot %s's file, want boot 2's (%s)", rwLayer, got, second.BootID)
		}
		if got := readLayerFile(t, top, rwLayer+".prev.1"); got != third.BootID {
			t.Errorf("%s.prev.1 holds %s, want boot 3's (%s)", rwLayer, got, third.BootID)
		}
		return nil
	})
	for i, c := range []string{c1, c2, c3} {
		t.Run(fmt.Sprintf("console-%d", i+1), func(t *testing.T) { checkEachLineOnce(t, c) })
	}
}

// relInit is /sbin/init of the boot-counting images: it prints which image
// booted, runs `dockroot mark-good` when the image says so, prints
// boot.json and the kernel log's dockroot records, and powers off.
const relInit = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
[ -e /proc/self ] || mount -t proc proc /proc
echo "REL-MARKER image=$(cat /etc/rel-tag)"
if [ -e /etc/rel-mark-good ]; then
	if /usr/bin/dockroot mark-good; then echo REL-MARKED-GOOD; else echo "REL-MARK-GOOD-FAILED $?"; fi
fi
echo REL-BOOTJSON-BEGIN
cat /run/dockroot/boot.json
echo REL-BOOTJSON-END
dmesg | grep 'dockroot:' | sed 's/^/REL-KMSG /'
echo REL-DONE
sync
poweroff -f
`

var relDiskOnce once[string]

// relDisk returns a copy, for t alone, of a disk like deskDisk's with two
// other images: good:1, whose init runs the real `dockroot mark-good`
// (the binary built from this checkout), and bad:1, which never does.
func relDisk(t *testing.T) string {
	p := product(t)
	src := relDiskOnce.get(t, "reliability disk", func() (string, error) {
		cli, err := os.ReadFile(p.CLI)
		if err != nil {
			return "", err
		}
		path := filepath.Join(work, "reliability.img")
		return path, vmkit.BuildDisk(path, vmkit.DiskSpec{
			SizeMB:     1024,
			Label:      rootLabel,
			DockerPath: dockerPath,
			Images: func(d *testenv.Dockerd) error {
				if err := vmkit.ImportBusybox(d, "vmtest/busybox:base"); err != nil {
					return err
				}
				if err := vmkit.Build(d, "good:1", []string{"FROM vmtest/busybox:base", "COPY rootfs/ /"}, []vmkit.File{
					{Path: "rootfs/sbin/init", Mode: 0o755, Data: relInit},
					{Path: "rootfs/etc/rel-tag", Data: "good:1\n"},
					{Path: "rootfs/etc/rel-mark-good", Data: "\n"},
					{Path: "rootfs/usr/bin/dockroot", Mode: 0o755, Data: string(cli)},
				}); err != nil {
					return err
				}
				return vmkit.Build(d, "bad:1", []string{"FROM vmtest/busybox:base", "COPY rootfs/ /"}, []vmkit.File{
					{Path: "rootfs/sbin/init", Mode: 0o755, Data: relInit},
					{Path: "rootfs/etc/rel-tag", Data: "bad:1\n"},
				})
			},
			Files: []vmkit.File{{Path: toplayerPath + "/etc/hostname", Data: toplayerHost + "\n"}},
		})
	})
	return copyDisk(t, src)
}

// bootRel boots the reliability disk and returns the console once the
// image's init has printed everything and powered off.
func bootRel(t *testing.T, disk, params string) string {
	t.Helper()
	vm := Boot(t, vmkit.Options{Initrd: initramfs(t), Append: params, Drives: []vmkit.Drive{{File: disk}}})
	expect(t, vm, "REL-MARKER", busyboxBoot)
	expect(t, vm, "REL-DONE", 60*time.Second)
	if err := vm.WaitExit(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	return vm.Console.String()
}

var relMarkerRE = regexp.MustCompile(`REL-MARKER image=(\S+)`)

// Boot counting end to end: good:1 boots and its init runs the real
// `dockroot mark-good`; bad:1 never does, so after dockroot.tries=2 boots
// of it the third boots good:1 instead and says so on the console and in
// boot.json, and the state on the disk says why.
func TestBootCountFallback(t *testing.T) {
	testenv.RequireVM(t)
	disk := relDisk(t)
	const params = ancestorParam + " dockroot.tries=2"

	type want struct {
		image    string
		attempt  int
		fellBack bool
	}
	var goodID, badID string
	for i, w := range []want{
		{"good:1", 1, false}, // counted, then marked good by its init
		{"bad:1", 1, false},
		{"bad:1", 2, false},
		{"good:1", 0, true}, // the fallback
	} {
		img := w.image
		if w.fellBack {
			img = "bad:1" // asked for; good:1 boots
		}
		console := bootRel(t, disk, params+" docker_image="+img)
		m := relMarkerRE.FindStringSubmatch(console)
		if m == nil || m[1] != w.image {
			t.Fatalf("boot %d (docker_image=%s): booted %v, want %s:\n%s", i+1, img, m, w.image, vmkit.Tail(console, 30))
		}
		rec := fullRecord(t, console, "REL-BOOTJSON-BEGIN", "REL-BOOTJSON-END")
		bc := rec.BootCount
		if bc == nil || bc.Tries != 2 || bc.Attempt != w.attempt || bc.FellBack != w.fellBack {
			t.Fatalf("boot %d: boot_count = %+v, want attempt %d, fell back %v", i+1, bc, w.attempt, w.fellBack)
		}
		switch i {
		case 0:
			goodID = rec.ImageID
			if !strings.Contains(console, "REL-MARKED-GOOD") {
				t.Fatalf("boot 1: `dockroot mark-good` failed in the booted system:\n%s", vmkit.Tail(console, 30))
			}
		case 1:
			badID = rec.ImageID
			if bc.LastGood == nil || bc.LastGood.ID != goodID {
				t.Errorf("boot 2: the last good image is %+v, want good:1 %s", bc.LastGood, goodID)
			}
		case 3:
			if rec.ImageID != goodID || !strings.HasSuffix(rec.Ref, "good:1") || bc.Requested.ID != badID || !rec.Layer.Fresh {
				t.Errorf("boot 4 record: ref %s id %s, requested %+v, layer %+v", rec.Ref, rec.ImageID, bc.Requested, rec.Layer)
			}
			if !strings.Contains(console, "dockroot: !!! FALLING BACK: ") || !strings.Contains(console, "FELL BACK to the last good image") {
				t.Errorf("boot 4: the fallback is not on the console:\n%s", vmkit.Tail(console, 60))
			}
			// good:1's init marks it good again, and hears that bad:1
			// still counts as failed.
			if !strings.Contains(console, "still counts as failed") {
				t.Errorf("boot 4: mark-good does not mention the failed image:\n%s", vmkit.Tail(console, 30))
			}
		}
		// The kernel log (what journald reads after the switch) has the
		// records that must survive its rate limit.
		for _, k := range []string{"REL-KMSG", "dockroot: boot steps took", "dockroot: switch_root: exec"} {
			if !regexp.MustCompile(`REL-KMSG [^\n]*` + regexp.QuoteMeta(strings.TrimPrefix(k, "REL-KMSG"))).MatchString(console) {
				t.Errorf("boot %d: the kernel log lacks %q", i+1, k)
			}
		}
		if w.fellBack && !regexp.MustCompile(`REL-KMSG [^\n]*dockroot: !!! FALLING BACK`).MatchString(console) {
			t.Errorf("boot %d: the fallback is not in the kernel log", i+1)
		}
		t.Run(fmt.Sprintf("console-%d", i+1), func(t *testing.T) { checkEachLineOnce(t, console) })
	}

	inspect(t, disk, "btrfs", func(top string) error {
		st, err := bootstate.Load(top)
		if err != nil {
			return err
		}
		if st.LastGood == nil || st.LastGood.ID != goodID || st.FellBack == nil || st.FellBack.ID != badID ||
			st.Trying == nil || st.Trying.ID != badID || st.Trying.Attempts != 2 {
			t.Errorf("state.json after the fallback: %+v", st.Record)
		}
		return nil
	})
}

// The hibernation guard with a real swap area on a second disk, found by
// resume=LABEL=: boot 1 makes a fresh layer (no hibernation image) and
// writes into it; then the swap area gets a hibernation signature, as a
// hibernating kernel writes it, and boot 2 keeps the layer as it is: it
// sees boot 1's file, nothing is rotated, and boot.json says why.
func TestHibernationGuard(t *testing.T) {
	testenv.RequireVM(t)
	testenv.RequireRoot(t, "mkswap")
	disk := deskDisk(t)
	swap := filepath.Join(t.TempDir(), "swap.img")
	if err := os.WriteFile(swap, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(swap, 32<<20); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "mkswap", "-p", "4096", "-L", "vmswap", swap)
	drives := []vmkit.Drive{{File: disk}, {File: swap}}
	params := ancestorParam + " resume=LABEL=vmswap"

	c1 := bootDesk(t, params, drives...)
	first := parseMarker(t, c1)
	if !strings.Contains(c1, "DOCKROOT-FRESH") || !strings.Contains(c1, "holds no hibernation image") {
		t.Fatalf("boot 1 (no hibernation image): want a fresh layer and the guard's note:\n%s", vmkit.Tail(c1, 40))
	}
	var before []string
	inspect(t, disk, "btrfs", func(top string) error {
		before = layerNames(t, top)
		return nil
	})

	// A hibernating kernel replaces "SWAPSPACE2" at the end of the first
	// page with its signature (kernel/power/swap.c, HIBERNATE_SIG).
	f, err := os.OpenFile(swap, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("S1SUSPEND\x00"), 4096-10); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	c2 := bootDesk(t, params, drives...)
	second := parseMarker(t, c2)
	if first.BootID == second.BootID {
		t.Fatal("the second boot did not happen")
	}
	if !strings.Contains(c2, "DOCKROOT-STALE "+first.BootID) {
		t.Errorf("with a hibernation image the layer was recreated: boot 2 does not see boot 1's file:\n%s", vmkit.Tail(c2, 40))
	}
	if !strings.Contains(c2, "dockroot: !!! hibernation: ") || !strings.Contains(c2, "S1SUSPEND") {
		t.Errorf("keeping the layer is not loud on the console:\n%s", vmkit.Tail(c2, 60))
	}
	rec := fullRecord(t, c2, "DOCKROOT-BOOTJSON-BEGIN", "DOCKROOT-BOOTJSON-END")
	if rec.LayerMode != "current" || rec.Layer.Subvolume != rwLayer || rec.Layer.Fresh || rec.Hibernation == nil ||
		!strings.Contains(rec.Hibernation.Reason, "S1SUSPEND") || !strings.HasPrefix(rec.Hibernation.Device, "/dev/vd") {
		t.Errorf("boot.json: layer %q %+v, hibernation %+v", rec.LayerMode, rec.Layer, rec.Hibernation)
	}
	inspect(t, disk, "btrfs", func(top string) error {
		if after := layerNames(t, top); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Errorf("the hibernation guard let the layers change: %v -> %v", before, after)
		}
		if got := readLayerFile(t, top, rwLayer); got != second.BootID {
			t.Errorf("%s holds %s, want boot 2's %s (boot 2 ran on it)", rwLayer, got, second.BootID)
		}
		return nil
	})
	t.Run("console-2", func(t *testing.T) { checkEachLineOnce(t, c2) })
}
