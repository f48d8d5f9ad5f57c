package hook

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/kmod"
)

// probingKernel is a fake kmod.Inserter whose drivers add devices when
// they load, as virtio_pci's probe registers the virtio devices that
// virtio_blk then drives.
type probingKernel struct {
	mu      sync.Mutex
	sys     string
	adds    map[string][2]string // module -> device dir, modalias it creates
	fail    map[string]error
	loaded  []string
	outcome kmod.Outcome
}

func (k *probingKernel) Load(m kmod.Module) (kmod.Outcome, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	name := m.Name()
	if err := k.fail[name]; err != nil {
		return kmod.Failed, err
	}
	k.loaded = append(k.loaded, name)
	if dev, ok := k.adds[name]; ok {
		if err := addDevice(k.sys, dev[0], dev[1]); err != nil {
			return kmod.Failed, err
		}
	}
	return kmod.Loaded, nil
}

// addDevice makes sys/devices/dir with a modalias, linked from
// sys/bus/test/devices as the kernel links a bus's devices.
func addDevice(sys, dir, alias string) error {
	full := filepath.Join(sys, "devices", dir)
	if err := os.MkdirAll(full, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(full, "modalias"), []byte(alias+"\n"), 0o444); err != nil {
		return err
	}
	bus := filepath.Join(sys, "bus/test/devices")
	if err := os.MkdirAll(bus, 0o755); err != nil {
		return err
	}
	return os.Symlink(full, filepath.Join(bus, filepath.Base(dir)))
}

func coldplugTable() *kmod.Table {
	t := &kmod.Table{Modules: []kmod.TableModule{
		{Name: "libcrc32c", Path: "kernel/lib/libcrc32c.ko"},
		{Name: "btrfs", Path: "kernel/fs/btrfs/btrfs.ko", Flags: kmod.FlagAlways, Deps: []int{0}},
		{Name: "virtio_pci", Path: "kernel/drivers/virtio/virtio_pci.ko"},
		{Name: "virtio_blk", Path: "kernel/drivers/block/virtio_blk.ko"},
		{Name: "ahci", Path: "kernel/drivers/ata/ahci.ko"},
		{Name: "jbd2", Path: "kernel/fs/jbd2/jbd2.ko"},
		{Name: "ext4", Path: "kernel/fs/ext4/ext4.ko", Deps: []int{5}},
		{Name: "vfat", Path: "kernel/fs/fat/vfat.ko"},
		{Name: "nls_cp437", Path: "kernel/fs/nls/nls_cp437.ko"},
	}}
	for _, a := range []struct {
		pattern string
		module  int
	}{
		{"fs_btrfs", 1}, {"pci:v00001AF4d*sv*sd*bc*sc*i*", 2}, {"virtio:d00000002v*", 3},
		{"pci:v*d*sv*sd*bc01sc06i01*", 4}, {"fs_ext4", 6}, {"fs_vfat", 7},
	} {
		p, r := kmod.SplitPattern(a.pattern)
		t.Aliases = append(t.Aliases, kmod.TableAlias{Prefix: p, Rest: r, Module: a.module})
	}
	return t
}

func TestColdplug(t *testing.T) {
	cases := []struct {
		name    string
		fsTypes []string
		fail    map[string]error
		want    []string // loaded, sorted
		failed  []string
		matched int
		devices int
	}{
		{"virtio disk: two rounds", []string{"btrfs"}, nil, []string{"btrfs", "libcrc32c", "virtio_blk", "virtio_pci"}, nil, 2, 4},
		{"toplayerfstype=ext4 adds ext4 and its dependency", []string{"btrfs", "ext4"}, nil,
			[]string{"btrfs", "ext4", "jbd2", "libcrc32c", "virtio_blk", "virtio_pci"}, nil, 2, 4},
		{"no top layer: btrfs alone, not ext4 or vfat", []string{"btrfs", ""}, nil,
			[]string{"btrfs", "libcrc32c", "virtio_blk", "virtio_pci"}, nil, 2, 4},
		{"toplayerfstype=vfat adds FAT's code page", []string{"btrfs", "vfat"}, nil,
			[]string{"btrfs", "libcrc32c", "nls_cp437", "vfat", "virtio_blk", "virtio_pci"}, nil, 2, 4},
		{"a top layer whose type is detected gets every filesystem", []string{"btrfs", AnyFilesystem}, nil,
			[]string{"btrfs", "ext4", "jbd2", "libcrc32c", "nls_cp437", "vfat", "virtio_blk", "virtio_pci"}, nil, 2, 4},
		{"a failing driver is reported, the rest loads", []string{"btrfs"}, map[string]error{"virtio_pci": errors.New("exec format error")},
			[]string{"btrfs", "libcrc32c"}, []string{"virtio_pci"}, 1, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sys := t.TempDir()
			for dir, alias := range map[string]string{
				"pci0000:00/0000:00:04.0": "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
				"pci0000:00/0000:00:00.0": "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00",
				"platform/serial8250":     "platform:serial8250",
			} {
				mustDo(t, addDevice(sys, dir, alias))
			}
			k := &probingKernel{sys: sys, fail: tc.fail, adds: map[string][2]string{
				"virtio_pci": {"pci0000:00/0000:00:04.0/virtio0", "virtio:d00000002v00001AF4"},
			}}
			tab := coldplugTable()
			set := kmod.NewSet(tab, k, 4, nil)
			sum, err := coldplug(tab, set, sys, tc.fsTypes, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			loaded := slices.Clone(k.loaded)
			slices.Sort(loaded)
			if !slices.Equal(loaded, tc.want) {
				t.Errorf("loaded %v, want %v", loaded, tc.want)
			}
			var failed []string
			for _, f := range set.Failures() {
				failed = append(failed, f.Module.Name())
			}
			if !slices.Equal(failed, tc.failed) {
				t.Errorf("failed %v, want %v", failed, tc.failed)
			}
			if sum.matched != tc.matched || sum.devices != tc.devices {
				t.Errorf("summary %+v: want %d of %d devices matched", sum, tc.matched, tc.devices)
			}
		})
	}
}

func TestWithModuleFailures(t *testing.T) {
	base := errors.New("root device LABEL=linux not found after 30s")
	if err := withModuleFailures(base, nil); err != base {
		t.Errorf("no failures: got %v, want the error unchanged", err)
	}
	err := withModuleFailures(base, []kmod.Failure{
		{Module: kmod.Module{Path: "kernel/drivers/block/virtio_blk.ko"}, Err: errors.New("finit_module: exec format error")},
	})
	if !errors.Is(err, base) || !strings.Contains(err.Error(), "virtio_blk: finit_module: exec format error") ||
		!strings.Contains(err.Error(), "1 kernel modules failed to load") {
		t.Errorf("error = %v; want the wait's error, then the failed module with its error", err)
	}
}

func TestModuleFSTypes(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    []string
	}{
		{"root=LABEL=linux rootflags=subvol=l docker_image=a", []string{"btrfs"}},
		{"root=LABEL=linux rootflags=subvol=l docker_image=a toplayer_path=top", []string{"btrfs", "btrfs"}},
		{"root=LABEL=linux rootflags=subvol=l docker_image=a toplayer=LABEL=usb toplayer_path=top toplayerfstype=vfat", []string{"btrfs", "vfat"}},
		{"root=LABEL=linux rootflags=subvol=l docker_image=a toplayer=LABEL=usb toplayer_path=top", []string{"btrfs", AnyFilesystem}},
		{"root=LABEL=linux rootflags=subvol=l docker_image=a toplayer=LABEL=usb", []string{"btrfs"}},
	} {
		c, err := config.Load(tc.cmdline, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.cmdline, err)
		}
		if got := moduleFSTypes(c); !slices.Equal(got, tc.want) {
			t.Errorf("%s: modules for %v, want %v", tc.cmdline, got, tc.want)
		}
	}
}
