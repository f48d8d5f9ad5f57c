package kmod

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

func TestFnmatch(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		// Aliases as Debian 6.1's modules carry them.
		{"pci:v00001AF4d00001001sv*sd*bc*sc*i*", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", true},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00", true},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00", false},
		{"pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", true},
		{"pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i00", false},
		{"virtio:d00000002v*", "virtio:d00000002v00001AF4", true},
		{"virtio:d00000002v*", "virtio:d00000008v00001AF4", false},
		{"usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*", "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00", true},
		{"scsi:t-0x00*", "scsi:t-0x00", true},
		{"scsi:t-0x0[0e]*", "scsi:t-0x0e", true},
		{"acpi*:PNP0A03:*", "acpi:PNP0A03:", true},
		{"acpi*:PNP0A03:*", "acpi:PNP0A08:PNP0A03:", true}, // a compatible ID matches too
		{"acpi*:PNP0A03:*", "acpi:PNP0A08:", false},
		{"cpu:type:x86,ven*fam*mod*:feature:*0094*", "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0094,00E2", true},
		{"cpu:type:x86,ven*fam*mod*:feature:*0094*", "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0095", false},
		{"of:N*T*Cvirtio,mmio", "of:NvirtioTCvirtio,mmio", true},
		// fnmatch without flags: '*' and '?' cross '/'.
		{"a*b", "a/x/b", true},
		{"a?b", "a/b", true},
		// Classes.
		{"x[!0-9]", "xa", true},
		{"x[!0-9]", "x5", false},
		{"x[^a]", "xb", true},
		{"x[]a]", "x]", true},
		{"x[a-]", "x-", true},
		{"x[a", "x[a", true}, // unclosed: a literal '['
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{"", "", true},
		{"*", "", true},
		{"?", "", false},
		{"**a", "bba", true},
		{"*a*b*c", "xaybzc", true},
		{"*a*b*c", "xaybz", false},
	}
	for _, tc := range cases {
		if got := Fnmatch(tc.pattern, tc.name); got != tc.want {
			t.Errorf("Fnmatch(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestSplitPattern(t *testing.T) {
	for _, tc := range []struct{ in, prefix, rest string }{
		{"pci:v00001AF4d*sv*", "pci:v00001AF4d", "*sv*"},
		{"fs-btrfs", "fs-btrfs", ""},
		{"*", "", "*"},
		{"scsi:t-0x0[0e]*", "scsi:t-0x0", "[0e]*"},
	} {
		p, r := SplitPattern(tc.in)
		if p != tc.prefix || r != tc.rest {
			t.Errorf("SplitPattern(%q) = %q, %q; want %q, %q", tc.in, p, r, tc.prefix, tc.rest)
		}
		if !Fnmatch(tc.in, p+"x") == Fnmatch(r, "x") && r != "" {
			t.Errorf("split of %q changes what it matches", tc.in)
		}
	}
}

// sampleTable is a small table shaped like a real one: libraries, a
// filesystem with soft dependencies, and drivers with aliases.
func sampleTable() *Table {
	mods := []TableModule{
		{Name: "libcrc32c", Path: "kernel/lib/libcrc32c.ko"},                                                // 0
		{Name: "crc32c_generic", Path: "kernel/crypto/crc32c_generic.ko"},                                   // 1
		{Name: "btrfs", Path: "kernel/fs/btrfs/btrfs.ko", Flags: FlagAlways, Deps: []int{0}, Pre: []int{1}}, // 2
		{Name: "virtio_pci", Path: "kernel/drivers/virtio/virtio_pci.ko"},                                   // 3
		{Name: "virtio_blk", Path: "kernel/drivers/block/virtio_blk.ko"},                                    // 4
		{Name: "ahci", Path: "kernel/drivers/ata/ahci.ko"},                                                  // 5
		{Name: "ext4", Path: "kernel/fs/ext4/ext4.ko", Post: []int{7}},                                      // 6
		{Name: "crc16", Path: "kernel/lib/crc16.ko"},                                                        // 7
	}
	var aliases []TableAlias
	add := func(pattern string, m int) {
		p, r := SplitPattern(NormalizeAlias(pattern)) // as the builder stores them
		aliases = append(aliases, TableAlias{Prefix: p, Rest: r, Module: m})
	}
	add("crypto-crc32c", 1)
	add("fs-btrfs", 2)
	add("pci:v00001AF4d*sv*sd*bc*sc*i*", 3)
	add("virtio:d00000002v*", 4)
	add("pci:v*d*sv*sd*bc01sc06i01*", 5)
	add("fs-ext4", 6)
	add("fs-ext3", 6)
	return &Table{Modules: mods, Aliases: aliases}
}

func TestTableRoundTripAndMatch(t *testing.T) {
	tab := sampleTable()
	data := tab.Encode()
	got, err := DecodeTable(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, tab) {
		t.Fatalf("decoded table differs:\n got %+v\nwant %+v", got, tab)
	}
	for _, tc := range []struct {
		alias string
		want  []int
	}{
		{"pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00", []int{3}},
		{"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", []int{5}},
		{"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc06i01", []int{3, 5}},
		{"virtio:d00000002v00001AF4", []int{4}},
		{"virtio:d00000001v00001AF4", nil},
		{"fs-ext4", []int{6}},
		{"crypto-crc32c", []int{1}},
	} {
		if m := got.Match(tc.alias); !slices.Equal(m, tc.want) {
			t.Errorf("Match(%q) = %v, want %v", tc.alias, m, tc.want)
		}
	}
	if got.Lookup("virtio-blk") != 4 || got.Lookup("nvme") != -1 {
		t.Errorf("Lookup: virtio-blk=%d nvme=%d, want 4 and -1", got.Lookup("virtio-blk"), got.Lookup("nvme"))
	}
}

func TestDecodeTableRejects(t *testing.T) {
	good := sampleTable().Encode()
	// reseal gives an edited body a valid checksum, so the check behind
	// the checksum is what rejects it.
	reseal := func(body []byte) []byte { return appendChecksum(append([]byte(nil), body...)) }
	depAfter := sampleTable()
	depAfter.Modules[0].Deps = []int{2} // libcrc32c needing btrfs: a cycle
	badAlias := sampleTable()
	badAlias.Aliases[0].Module = 99
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "bad magic"},
		{"not a table", []byte("# written by dockroot initramfs\nkernel/fs/btrfs/btrfs.ko\n"), "bad magic"},
		{"newer version", append([]byte("DRKMODT\x02"), good[8:]...), "format version 2"},
		{"damaged", append(append([]byte(nil), good[:20]...), append([]byte{good[20] ^ 0xff}, good[21:]...)...), "checksum"},
		{"truncated", reseal(good[:len(good)-10]), ""},
		{"dependency after its module", depAfter.Encode(), "out of range"},
		{"alias of no module", badAlias.Encode(), "names module 99"},
		{"trailing bytes", reseal(append(append([]byte(nil), good[:len(good)-4]...), 0, 0)), "bytes after"},
	}
	for _, tc := range cases {
		_, err := DecodeTable(tc.data)
		var te *TableError
		if !errors.As(err, &te) || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("%s: DecodeTable error = %v, want a *TableError containing %q", tc.name, err, tc.want)
		}
	}
}

func FuzzDecodeTable(f *testing.F) {
	f.Add(sampleTable().Encode())
	f.Add((&Table{}).Encode())
	f.Add([]byte("DRKMODT\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := DecodeTable(data)
		if err != nil {
			return
		}
		// Whatever decodes is safe to use: indices in range, dependencies
		// first, and it encodes back to the same bytes.
		for i, m := range tab.Modules {
			for _, d := range append(slices.Clone(m.Deps), m.Pre...) {
				if d < 0 || d >= i {
					t.Fatalf("module %d depends on %d", i, d)
				}
			}
			for _, p := range m.Post {
				if p < 0 || p >= len(tab.Modules) {
					t.Fatalf("module %d post %d", i, p)
				}
			}
		}
		for _, a := range tab.Aliases {
			if a.Module < 0 || a.Module >= len(tab.Modules) {
				t.Fatalf("alias module %d", a.Module)
			}
			tab.Match(a.Prefix + "x")
		}
		again, err := DecodeTable(tab.Encode())
		if err != nil || !reflect.DeepEqual(again, tab) {
			t.Fatalf("re-encoded table: %v", err)
		}
	})
}

func TestModaliases(t *testing.T) {
	root := t.TempDir()
	// device dir under devices/ -> modalias ("" for none), and the bus or
	// class links the kernel makes to it.
	devs := []struct{ dir, alias, link string }{
		{"pci0000:00/0000:00:04.0", "pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00", "bus/pci/devices/0000:00:04.0"},
		{"pci0000:00/0000:00:04.0/virtio1", "virtio:d00000002v00001AF4", "bus/virtio/devices/virtio1"},
		{"pci0000:00/0000:00:04.0/virtio1/block/vda", "", "class/block/vda"},
		{"system/cpu/cpu0", "cpu:type:x86,ven0000fam0006mod003F:feature:,0000", "bus/cpu/devices/cpu0"},
		{"platform/serial8250", "platform:serial8250", "bus/platform/devices/serial8250"},
		{"virtual/dmi/id", "dmi:bvnSeaBIOS:pnStandardPC", "class/dmi/id"},
		{"platform/i8042/serio0/input/input1", "input:b0011v0001p0001eAB41-e0,1,4,11,14", "class/input/input1"},
	}
	for _, d := range devs {
		dir := filepath.Join(root, "devices", d.dir)
		must(t, os.MkdirAll(dir, 0o755))
		if d.alias != "" {
			must(t, os.WriteFile(filepath.Join(dir, "modalias"), []byte(d.alias+"\n"), 0o444))
		}
		link := filepath.Join(root, d.link)
		must(t, os.MkdirAll(filepath.Dir(link), 0o755))
		rel, err := filepath.Rel(filepath.Dir(link), dir)
		must(t, err)
		must(t, os.Symlink(rel, link))
	}
	// The same device linked from its class as well is read once.
	must(t, os.MkdirAll(filepath.Join(root, "class/virtio-ports"), 0o755))
	must(t, os.Symlink("../../devices/pci0000:00/0000:00:04.0/virtio1", filepath.Join(root, "class/virtio-ports/vport0")))
	got, err := Modaliases(root)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	var want []string
	for _, d := range devs {
		if d.alias != "" {
			want = append(want, d.alias)
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Modaliases = %q, want %q", got, want)
	}
	if _, err := Modaliases(filepath.Join(root, "missing")); err == nil {
		t.Error("Modaliases of a missing /sys: no error")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
