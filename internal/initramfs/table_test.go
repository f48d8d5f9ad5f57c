package initramfs

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/dockroot/dockroot/internal/kmod"
	"github.com/dockroot/dockroot/internal/layout"
)

// nativeKernelRoot is the cached Debian kernel package for this machine's
// architecture (the cache may hold others), or skips.
func nativeKernelRoot(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("DOCKROOT_CACHE")
	if cache == "" {
		repo, err := filepath.Abs("../..")
		must(t, err)
		cache = filepath.Join(repo, ".cache")
	}
	done, _ := filepath.Glob(filepath.Join(cache, "kernel", "linux-image-*-"+runtime.GOARCH+"_*", ".complete"))
	if len(done) == 0 {
		t.Skipf("no cached Debian %s kernel in %s/kernel (tests/vm/fetch-kernel.sh fetches one)", runtime.GOARCH, cache)
	}
	slices.Sort(done)
	return filepath.Dir(done[len(done)-1])
}

// tableOf builds an initramfs for root in mode and returns the module
// table the init would read from it (nil when there is none), and the
// result.
func tableOf(t *testing.T, root string, opts Options) (*kmod.Table, *Result) {
	t.Helper()
	opts.Output = filepath.Join(t.TempDir(), "initrd")
	opts.Root = root
	opts.InitBinary = standInInit(t)
	opts.Compress = None
	res, err := Build(opts)
	must(t, err)
	rec, ok := unpack(t, opts.Output)[layout.ModulesTable]
	if !ok {
		return nil, res
	}
	tab, err := kmod.DecodeTable([]byte(content(t, rec)))
	if err != nil {
		t.Fatalf("the table the builder wrote does not decode: %v", err)
	}
	return tab, res
}

// TestTableFromDebianKernel: the table written from Debian's real kernel
// tree answers the aliases of a QEMU machine's devices as modprobe would,
// lists dependencies before their modules, and flags the filesystems.
func TestTableFromDebianKernel(t *testing.T) {
	root := nativeKernelRoot(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("the device aliases below are a PC's")
	}
	tab, res := tableOf(t, root, Options{})
	if res.ModuleMode != ModulesAlias || len(tab.Modules) != len(res.Modules) || res.Aliases != len(tab.Aliases) {
		t.Fatalf("mode %s, table of %d modules and %d aliases; result has %d modules and %d aliases",
			res.ModuleMode, len(tab.Modules), len(tab.Aliases), len(res.Modules), res.Aliases)
	}
	for i, m := range tab.Modules {
		if m.Name != res.Modules[i].Name || m.Path != res.Modules[i].Path {
			t.Errorf("table module %d is %s (%s), list has %s (%s)", i, m.Name, m.Path, res.Modules[i].Name, res.Modules[i].Path)
		}
	}
	name := func(idx []int) []string {
		var out []string
		for _, i := range idx {
			out = append(out, tab.Modules[i].Name)
		}
		slices.Sort(out)
		return out
	}
	// Modaliases as QEMU's q35/pc machines with virtio, AHCI, NVMe, xHCI
	// and a USB stick show them under /sys/devices.
	for _, tc := range []struct {
		modalias string
		want     []string
	}{
		{"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", []string{"virtio_pci"}},     // virtio-blk, legacy
		{"pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00", []string{"virtio_pci"}},     // virtio-blk, modern
		{"virtio:d00000002v00001AF4", []string{"virtio_blk"}},                                 // the disk on the virtio bus
		{"virtio:d00000008v00001AF4", []string{"virtio_scsi"}},                                // a virtio-scsi host
		{"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", []string{"ahci"}},           // ICH9 AHCI
		{"pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", []string{"ata_piix"}},       // PIIX3 IDE
		{"pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02", []string{"nvme"}},           // QEMU NVMe
		{"pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30", []string{"xhci_pci"}},       // QEMU xHCI
		{"usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", []string{"uas", "usb_storage"}}, // usb-storage, bulk-only
		{"scsi:t-0x00", []string{"sd_mod"}},                                                   // a SCSI disk
		{"pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00", nil},                        // the host bridge
		{"platform:serial8250", nil},                                                          // nothing packed drives it
		{"fs-btrfs", []string{"btrfs"}},                                                       // the kernel's request_module name
		{"fs-ext4", []string{"ext4"}},
	} {
		if got := name(tab.Match(tc.modalias)); !slices.Equal(got, tc.want) {
			t.Errorf("Match(%s) = %v, want %v", tc.modalias, got, tc.want)
		}
	}
	// The root's filesystem is loaded whatever the hardware; the other
	// filesystems (by the top layer's type at boot) and the drivers are not.
	if i := tab.Lookup(RootFilesystemModule); i < 0 || !tab.Modules[i].Always() {
		t.Errorf("root filesystem %s: index %d, not flagged to load always", RootFilesystemModule, i)
	}
	for _, n := range FilesystemModules[1:] {
		if i := tab.Lookup(n); i < 0 || tab.Modules[i].Always() {
			t.Errorf("filesystem %s: index %d, flagged always (want by the top layer's type only)", n, i)
		}
	}
	for _, n := range []string{"virtio_pci", "ahci", "nvme", "usb_storage"} {
		if i := tab.Lookup(n); i < 0 || tab.Modules[i].Always() {
			t.Errorf("driver %s: index %d, flagged always (want by alias only)", n, i)
		}
	}
	// btrfs's own dependencies and checksum soft dependencies, as indices
	// below it (the reader checked the order).
	b := tab.Modules[tab.Lookup("btrfs")]
	if deps := name(b.Deps); !slices.Contains(deps, "libcrc32c") || !slices.Contains(deps, "raid6_pq") {
		t.Errorf("btrfs deps = %v, want libcrc32c and raid6_pq among them", deps)
	}
	if pre := name(b.Pre); !slices.Contains(pre, "blake2b_generic") || !slices.Contains(pre, "xxhash_generic") {
		t.Errorf("btrfs pre: soft deps = %v, want blake2b_generic and xxhash_generic among them", pre)
	}

	// --modules all writes no table: the init loads the list.
	if tab, _ := tableOf(t, root, Options{ModuleMode: ModulesAll}); tab != nil {
		t.Error("--modules all wrote a module table")
	}

	// --modules hostonly packs what /proc/modules lists, and the
	// filesystems; a module without a device alias (dm_mod) loads always.
	proc := filepath.Join(t.TempDir(), "modules")
	must(t, os.WriteFile(proc, []byte("virtio_blk 20480 2 - Live 0x0000000000000000\ndm_mod 184320 0 - Live 0x0000000000000000\nnot_in_this_kernel 1 0 - Live 0x0\n"), 0o644))
	host, hres := tableOf(t, root, Options{ModuleMode: ModulesHostOnly, ProcModules: proc})
	var names []string
	for _, m := range hres.Modules {
		names = append(names, m.Name)
	}
	for _, want := range []string{"virtio_blk", "dm_mod", "btrfs", "ext4"} {
		if !slices.Contains(names, want) {
			t.Errorf("hostonly packs %v, missing %s", names, want)
		}
	}
	for _, not := range []string{"ahci", "nvme", "usb_storage"} {
		if slices.Contains(names, not) {
			t.Errorf("hostonly packs %s, which the build machine did not have loaded", not)
		}
	}
	if i := host.Lookup("dm_mod"); i < 0 || !host.Modules[i].Always() {
		t.Error("hostonly: dm_mod (no device alias) not flagged to load always")
	}
	if i := host.Lookup("virtio_blk"); i < 0 || host.Modules[i].Always() {
		t.Error("hostonly: virtio_blk flagged always, want by alias")
	}
	if len(hres.Modules) >= len(res.Modules) {
		t.Errorf("hostonly packs %d modules, alias %d: want fewer", len(hres.Modules), len(res.Modules))
	}
	t.Logf("alias: %d modules, %d aliases, %d bytes of table; hostonly: %d modules", len(tab.Modules), len(tab.Aliases), len(tab.Encode()), len(hres.Modules))
}
