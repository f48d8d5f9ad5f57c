package blockdev

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/testenv"
	"golang.org/x/sys/unix"
)

// loopDisk attaches a GPT image (ESP + btrfs partition with unique names
// and label) with partition scanning and returns the loop device and the
// btrfs label and PARTLABEL. The loop device is detached in cleanup.
func loopDisk(t *testing.T) (loop, label, partLabel string) {
	t.Helper()
	testenv.RequireRoot(t, "sgdisk", "blkid")
	tag := fmt.Sprintf("dr%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	label, partLabel = "lbl-"+tag, "part-"+tag
	img := image(t, t.TempDir(), "disk.img", 200)
	run(t, "sgdisk", "-n", "1:2048:+40M", "-c", "1:esp-"+tag, "-t", "1:ef00", "-n", "2:0:0", "-c", "2:"+partLabel, img)
	loop = strings.TrimSpace(testenv.Run(t, "losetup", "--find", "--show", "--partscan", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Logf("cleanup: losetup -d %s: %v %s", loop, err, out)
		}
	})
	// The kernel adds the partitions on attach; their nodes come from
	// devtmpfs. Waiting for them is itself what Wait is for.
	s := &Scanner{SysClassBlock: "/sys/class/block", DevDir: "/dev", Log: t.Logf}
	p2, err := s.Wait(context.Background(), config.DeviceSpec{Kind: config.DevicePath, Value: loop + "p2"}, WaitOptions{Timeout: 3 * time.Second, Log: t.Logf})
	if err != nil {
		if _, statErr := os.Stat(filepath.Join("/sys/class/block", filepath.Base(loop), filepath.Base(loop)+"p2")); statErr != nil {
			t.Skipf("the host kernel made no partitions for %s (CONFIG_EFI_PARTITION off?): "+
				"PARTUUID/PARTLABEL through real sysfs is left to the VM tier; %v", loop, err)
		}
		t.Fatal(err)
	}
	testenv.Run(t, "mkfs.btrfs", "-q", "-f", "-L", label, p2.Path)
	return loop, label, partLabel
}

func TestRootResolveLoopDevice(t *testing.T) {
	loop, label, partLabel := loopDisk(t)
	part := loop + "p2"
	bl := blkid(t, part)
	if bl["LABEL"] != label || bl["PART_ENTRY_NAME"] != partLabel {
		t.Fatalf("blkid %s = %v; the fixture is not what it should be", part, bl)
	}
	s := NewScanner(t.Logf)
	s.MakeNodes = false
	for _, spec := range []config.DeviceSpec{
		{Kind: config.DeviceLabel, Value: label},
		{Kind: config.DeviceUUID, Value: strings.ToUpper(bl["UUID"])},
		{Kind: config.DevicePartUUID, Value: bl["PART_ENTRY_UUID"]},
		{Kind: config.DevicePartLabel, Value: partLabel},
		{Kind: config.DevicePath, Value: part},
	} {
		d, err := s.Resolve(spec)
		if err != nil {
			t.Errorf("Resolve(%s): %v", spec, err)
			continue
		}
		if d.Path != part || d.Parent != filepath.Base(loop) || d.PartN != 2 || d.Type != "btrfs" ||
			d.UUID != bl["UUID"] || d.UUIDSub != bl["UUID_SUB"] || d.PartUUID != bl["PART_ENTRY_UUID"] {
			t.Errorf("Resolve(%s) = %#v; blkid says %v", spec, d, bl)
		}
	}
}

// wholeLoop attaches a btrfs image without a partition table.
func wholeLoop(t *testing.T) (loop, label string) {
	t.Helper()
	testenv.RequireRoot(t, "blkid")
	label = fmt.Sprintf("lbl-dr%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	img := image(t, t.TempDir(), "btrfs.img", 120, "mkfs.btrfs", "-q", "-L", label)
	loop = strings.TrimSpace(testenv.Run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Logf("cleanup: losetup -d %s: %v %s", loop, err, out)
		}
	})
	return loop, label
}

func TestRootResolveWholeLoopDevice(t *testing.T) {
	loop, label := wholeLoop(t)
	bl := blkid(t, loop)
	var st unix.Stat_t
	if err := unix.Stat(loop, &st); err != nil {
		t.Fatal(err)
	}
	s := NewScanner(t.Logf)
	s.MakeNodes = false
	for _, spec := range []config.DeviceSpec{
		{Kind: config.DeviceLabel, Value: label},
		{Kind: config.DeviceUUID, Value: strings.ToUpper(bl["UUID"])},
		{Kind: config.DevicePath, Value: loop},
		{Kind: config.DeviceNumber, Value: fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))},
	} {
		d, err := s.Wait(context.Background(), spec, WaitOptions{Timeout: 5 * time.Second, Log: t.Logf})
		if err != nil {
			t.Errorf("Wait(%s): %v", spec, err)
			continue
		}
		if d.Path != loop || d.Type != "btrfs" || d.Label != label || d.UUID != bl["UUID"] || d.UUIDSub != bl["UUID_SUB"] {
			t.Errorf("Wait(%s) = %#v; blkid says %v", spec, d, bl)
		}
	}
}

// With /dev lacking the nodes (a plain tmpfs /dev), the scan makes them
// from sysfs and reads the device through them.
func TestRootMakesMissingNodes(t *testing.T) {
	loop, label := wholeLoop(t)
	dev := t.TempDir()
	s := &Scanner{SysClassBlock: "/sys/class/block", DevDir: dev, MakeNodes: true, Log: t.Logf}
	d, err := s.Resolve(config.DeviceSpec{Kind: config.DeviceLabel, Value: label})
	if err != nil {
		t.Fatal(err)
	}
	if d.Path != filepath.Join(dev, filepath.Base(loop)) {
		t.Errorf("Path = %s, want it under %s", d.Path, dev)
	}
	var st, want unix.Stat_t
	if err := unix.Stat(d.Path, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(loop, &want); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != want.Rdev {
		t.Errorf("made node %s: mode %o rdev %x, want a block device %x", d.Path, st.Mode, st.Rdev, want.Rdev)
	}
}
