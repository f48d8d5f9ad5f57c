package blockdev

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/config"
)

// fakeMachine builds a fake sysfs whose "device nodes" are real images:
//
//	vda   GPT disk (sgdisk): vda1 vfat "ESP", vda2 btrfs "dockroot", vda3 swap
//	vdb   whole-disk ext4 "top", no partition table
//	sr0   empty CD drive (size 0)
//
// Partition nodes hold the bytes of their partition, as a kernel's would.
type fakeMachine struct {
	sys       *fakeSys
	table     *PartitionTable
	btrfsUUID string
}

func newFakeMachine(t *testing.T) *fakeMachine {
	t.Helper()
	requireTools(t, "sgdisk", "mkfs.vfat", "mkfs.btrfs", "mkswap", "mkfs.ext4")
	work := t.TempDir()
	disk := gptImage(t, work)
	m := &fakeMachine{sys: newFakeSys(t), table: readTableFile(t, disk)}
	parts := []struct {
		mkfs []string
	}{
		{[]string{"mkfs.vfat", "-n", "ESP", "-i", "12345678"}},
		{[]string{"mkfs.btrfs", "-q", "-L", "dockroot"}},
		{[]string{"mkswap", "-L", "swap"}},
	}
	m.sys.add("vda", "", 252, 0, 0, fileSize(t, disk), disk)
	disk = filepath.Join(m.sys.Dev, "vda")
	for i, p := range parts {
		part := m.table.Partitions[i]
		node := filepath.Join(work, fmt.Sprintf("vda%d", i+1))
		extract(t, disk, node, part.FirstLBA, part.SectorsLen)
		run(t, append(p.mkfs, node)...)
		if i == 1 {
			m.btrfsUUID = blkid(t, node)["UUID"]
		}
		m.sys.add(fmt.Sprintf("vda%d", i+1), "vda", 252, uint32(i+1), i+1, int64(part.SectorsLen)*512, node)
	}
	ext := image(t, work, "vdb", 16, "mkfs.ext4", "-q", "-L", "top", "-U", "0d1e2f30-1111-4222-8333-444455556666")
	m.sys.add("vdb", "", 252, 16, 0, fileSize(t, ext), ext)
	m.sys.add("sr0", "", 11, 0, 0, 0, "")
	return m
}

func (m *fakeMachine) scanner(log func(string, ...any)) *Scanner {
	return &Scanner{SysClassBlock: m.sys.Class, DevDir: m.sys.Dev, Log: log}
}

func TestListFakeSysfs(t *testing.T) {
	m := newFakeMachine(t)
	devs, err := m.scanner(t.Logf).List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]Device{}
	for _, d := range devs {
		names = append(names, d.Name)
		byName[d.Name] = d
	}
	if got, want := strings.Join(names, " "), "sr0 vda vda1 vda2 vda3 vdb"; got != want {
		t.Fatalf("devices = %s, want %s", got, want)
	}
	p := m.table.Partitions
	checks := []struct {
		name string
		got  Device
		want Device
	}{
		{"vda", byName["vda"], Device{Name: "vda", Major: 252, PTType: "gpt", PTUUID: m.table.UUID}},
		{"vda1", byName["vda1"], Device{Name: "vda1", Major: 252, Minor: 1, Parent: "vda", PartN: 1,
			Superblock: Superblock{Type: "vfat", Label: "ESP", UUID: "1234-5678", Version: "FAT16"}, PartUUID: p[0].UUID, PartLabel: "EFI system"}},
		{"vda2", byName["vda2"], Device{Name: "vda2", Major: 252, Minor: 2, Parent: "vda", PartN: 2,
			Superblock: Superblock{Type: "btrfs", Label: "dockroot", UUID: m.btrfsUUID}, PartUUID: p[1].UUID, PartLabel: "dockroot root ü"}},
		{"vda3", byName["vda3"], Device{Name: "vda3", Major: 252, Minor: 3, Parent: "vda", PartN: 3,
			Superblock: Superblock{Type: "swap", Label: "swap", Version: "1"}, PartUUID: p[2].UUID, PartLabel: "swap"}},
		{"vdb", byName["vdb"], Device{Name: "vdb", Major: 252, Minor: 16,
			Superblock: Superblock{Type: "ext4", Label: "top", UUID: "0d1e2f30-1111-4222-8333-444455556666", Version: "1.0"}}},
		{"sr0", byName["sr0"], Device{Name: "sr0", Major: 11}},
	}
	for _, c := range checks {
		g := c.got
		// Fields the table cannot know in advance are compared for shape only.
		if g.Path != filepath.Join(m.sys.Dev, c.name) {
			t.Errorf("%s: Path = %s", c.name, g.Path)
		}
		if c.name != "sr0" && g.Size == 0 {
			t.Errorf("%s: Size = 0", c.name)
		}
		g.Path, g.Size, g.UUIDSub = "", 0, ""
		if c.name == "vda3" {
			g.UUID = "" // random: mkswap was not given -U
		}
		if g != c.want {
			t.Errorf("%s:\n got %#v\nwant %#v", c.name, g, c.want)
		}
	}
}

func TestResolveEveryKind(t *testing.T) {
	m := newFakeMachine(t)
	s := m.scanner(t.Logf)
	p := m.table.Partitions
	cases := []struct {
		spec string
		want string
	}{
		{"LABEL=dockroot", "vda2"},
		{"UUID=" + strings.ToUpper(m.btrfsUUID), "vda2"},
		{"UUID=1234-5678", "vda1"},
		{"UUID=0D1E2F30-1111-4222-8333-444455556666", "vdb"},
		{"PARTUUID=" + strings.ToUpper(p[1].UUID), "vda2"},
		{"PARTUUID=" + p[0].UUID + "/PARTNROFF=1", "vda2"},
		{"PARTLABEL=dockroot root ü", "vda2"},
		{"/dev/disk/by-partlabel/EFI\\x20system", "vda1"},
		{"/dev/vda3", "vda3"},
		{"/dev/vdb", "vdb"},
		{"252:2", "vda2"},
	}
	for _, tc := range cases {
		spec, err := config.ParseDeviceSpec(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.Resolve(spec)
		if err != nil || d.Name != tc.want {
			t.Errorf("Resolve(%s) = %s, %v; want %s", tc.spec, d.Name, err, tc.want)
		}
	}
}

func TestResolveNotFoundListsDevices(t *testing.T) {
	m := newFakeMachine(t)
	_, err := m.scanner(nil).Resolve(config.DeviceSpec{Kind: config.DeviceLabel, Value: "missing"})
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("Resolve(LABEL=missing) error = %v, want *NotFoundError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"root device LABEL=missing not found",
		`/dev/vda2: SIZE="130.0MiB" TYPE="btrfs" LABEL="dockroot" UUID="` + m.btrfsUUID + `" PARTUUID="` + m.table.Partitions[1].UUID + `" PARTLABEL="dockroot root ü"`,
		`/dev/vdb: SIZE="16.0MiB" TYPE="ext4" LABEL="top"`,
		`/dev/vda: SIZE="200.0MiB" PTTYPE="gpt"`,
		"sr0",
		"Check root= on the kernel command line",
		"dockroot initramfs --module NAME",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message lacks %q:\n%s", want, msg)
		}
	}
}

// Two disks with one label: the first wins and the ambiguity is logged.
func TestFindWarnsOnDuplicates(t *testing.T) {
	devs := []Device{
		{Name: "sda1", Path: "/dev/sda1", Superblock: Superblock{Label: "root", UUID: "a"}},
		{Name: "sdb1", Path: "/dev/sdb1", Superblock: Superblock{Label: "root", UUID: "b"}},
	}
	var warned string
	d, ok := Find(devs, config.DeviceSpec{Kind: config.DeviceLabel, Value: "root"}, func(f string, a ...any) { warned = fmt.Sprintf(f, a...) })
	if !ok || d.Name != "sda1" {
		t.Fatalf("Find = %s %v, want sda1", d.Name, ok)
	}
	if !strings.Contains(warned, "/dev/sda1, /dev/sdb1") {
		t.Errorf("warning = %q, want both devices named", warned)
	}
}

func TestListMissingNodeIsReportedNotFatal(t *testing.T) {
	sys := newFakeSys(t)
	sys.add("vdz", "", 252, 32, 0, 1<<20, "")
	devs, err := (&Scanner{SysClassBlock: sys.Class, DevDir: sys.Dev}).List()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || !strings.Contains(devs[0].ProbeError, "does not exist") {
		t.Fatalf("devices = %+v, want vdz with a missing-node error", devs)
	}
}

func TestListWithoutSysfs(t *testing.T) {
	_, err := (&Scanner{SysClassBlock: filepath.Join(t.TempDir(), "nope"), DevDir: "/dev"}).List()
	if err == nil || !strings.Contains(err.Error(), "is sysfs mounted?") {
		t.Fatalf("List on a missing sysfs: %v, want a hint about sysfs", err)
	}
}

// The device appears while Wait polls: it is added from Wait's own first
// "waiting for" log line, so the test does not depend on timing.
func TestWaitFindsLateDevice(t *testing.T) {
	requireTools(t, "mkfs.ext4")
	sys := newFakeSys(t)
	img := image(t, t.TempDir(), "vdc", 16, "mkfs.ext4", "-q", "-L", "late")
	var lines []string
	log := func(f string, a ...any) {
		line := fmt.Sprintf(f, a...)
		lines = append(lines, line)
		if strings.HasPrefix(line, "waiting for") && len(lines) == 1 {
			sys.add("vdc", "", 252, 32, 0, fileSize(t, img), img)
		}
	}
	s := &Scanner{SysClassBlock: sys.Class, DevDir: sys.Dev}
	d, err := s.Wait(context.Background(), config.DeviceSpec{Kind: config.DeviceLabel, Value: "late"}, WaitOptions{RootWait: true, Poll: time.Millisecond, Log: log})
	if err != nil || d.Name != "vdc" {
		t.Fatalf("Wait = %s, %v; want vdc", d.Name, err)
	}
	if !strings.Contains(lines[0], "rootwait") || !strings.Contains(lines[len(lines)-1], "found root device LABEL=late as") {
		t.Errorf("log = %q", lines)
	}
}

func TestWaitTimeout(t *testing.T) {
	m := newFakeMachine(t)
	_, err := m.scanner(nil).Wait(context.Background(), config.DeviceSpec{Kind: config.DeviceLabel, Value: "nope"},
		WaitOptions{What: "toplayer", Timeout: time.Millisecond, Poll: time.Millisecond})
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("Wait error = %v, want *NotFoundError", err)
	}
	if nf.Waited <= 0 || len(nf.Devices) != 6 || !strings.Contains(err.Error(), "toplayer device LABEL=nope not found after") ||
		!strings.Contains(err.Error(), "Check toplayer=") {
		t.Errorf("error = %v", err)
	}
}

// rootwait without dockroot.timeout waits until the context ends.
func TestWaitRootWaitStopsOnContext(t *testing.T) {
	sys := newFakeSys(t)
	ctx, cancel := context.WithCancel(context.Background())
	log := func(string, ...any) { cancel() }
	_, err := (&Scanner{SysClassBlock: sys.Class, DevDir: sys.Dev}).Wait(ctx, config.DeviceSpec{Kind: config.DeviceLabel, Value: "x"},
		WaitOptions{RootWait: true, Poll: time.Millisecond, Log: log})
	var nf *NotFoundError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &nf) || !strings.Contains(err.Error(), "no block devices at all") {
		t.Fatalf("Wait = %v, want a NotFoundError caused by context.Canceled", err)
	}
}

func TestWaitRootDelayHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := &Scanner{SysClassBlock: t.TempDir(), DevDir: t.TempDir()}
	_, err := s.Wait(ctx, config.DeviceSpec{Kind: config.DeviceLabel, Value: "x"}, WaitOptions{RootDelay: time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait during rootdelay = %v, want context.Canceled", err)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 512: "512B", 1024: "1.0KiB", 130 << 20: "130.0MiB", 3 << 40: "3.0TiB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %s, want %s", n, got, want)
		}
	}
}

// A disk whose GPT the kernel did not split (no CONFIG_EFI_PARTITION) is
// listed with its table, and the error says why its partitions are absent.
func TestNotFoundNamesMissingPartitionSupport(t *testing.T) {
	sys := newFakeSys(t)
	disk := gptImage(t, t.TempDir())
	sys.add("sda", "", 8, 0, 0, fileSize(t, disk), disk)
	_, err := (&Scanner{SysClassBlock: sys.Class, DevDir: sys.Dev}).Resolve(config.DeviceSpec{Kind: config.DevicePartLabel, Value: "swap"})
	if err == nil || !strings.Contains(err.Error(), `PTTYPE="gpt"`) ||
		!strings.Contains(err.Error(), "has a gpt partition table but the kernel shows no partitions on it: the kernel lacks CONFIG_EFI_PARTITION") {
		t.Fatalf("error = %v", err)
	}
}

// With Wake, a device that appears is found at the wake-up, not at the next
// poll: the poll interval here is an hour.
func TestWaitWakesOnEvent(t *testing.T) {
	requireTools(t, "mkfs.ext4")
	sys := newFakeSys(t)
	img := image(t, t.TempDir(), "vdd", 16, "mkfs.ext4", "-q", "-L", "woken")
	wake := make(chan struct{}, 1)
	log := func(f string, a ...any) {
		if strings.HasPrefix(fmt.Sprintf(f, a...), "waiting for") {
			sys.add("vdd", "", 252, 48, 0, fileSize(t, img), img)
			wake <- struct{}{} // what the uevent listener sends for "add" of a block device
		}
	}
	s := &Scanner{SysClassBlock: sys.Class, DevDir: sys.Dev}
	start := time.Now()
	d, err := s.Wait(context.Background(), config.DeviceSpec{Kind: config.DeviceLabel, Value: "woken"},
		WaitOptions{Timeout: time.Minute, Poll: time.Hour, Wake: wake, Log: log})
	if err != nil || d.Name != "vdd" {
		t.Fatalf("Wait = %s, %v; want vdd", d.Name, err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Wait took %s: it did not wake on the event", took)
	}
}
