package initramfs

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// A hand-written database in the kernel's text formats, shaped like
// Debian's 6.1: btrfs has hard deps and soft deps on crypto aliases, one of
// which (sha256) is built in; crc32c has two providers.
const (
	fixtureDep = `kernel/fs/btrfs/btrfs.ko: kernel/crypto/xor.ko kernel/lib/raid6/raid6_pq.ko kernel/lib/libcrc32c.ko
kernel/crypto/xor.ko:
kernel/lib/raid6/raid6_pq.ko:
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/crypto/xxhash_generic.ko:
kernel/crypto/blake2b_generic.ko:
kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko
kernel/drivers/usb/storage/uas.ko: kernel/drivers/usb/storage/usb-storage.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko
kernel/drivers/scsi/scsi_mod.ko:
kernel/drivers/usb/core/usbcore.ko: kernel/drivers/usb/common/usb-common.ko
kernel/drivers/usb/common/usb-common.ko:
kernel/drivers/hid/hid-generic.ko: kernel/drivers/hid/hid.ko
kernel/drivers/hid/hid.ko:
updates/dkms/zfs.ko.xz:
`
	fixtureSoftdep = `# Soft dependencies extracted from modules themselves.
softdep btrfs pre: blake2b-256
softdep btrfs pre: sha256
softdep btrfs pre: xxhash64
softdep btrfs pre: crypto-crc32c
softdep libcrc32c pre: crc32c
softdep cifs gcm
softdep hid_generic post: usb-storage
`
	fixtureAlias = `# Aliases extracted from modules themselves.
alias crypto-crc32c-intel crc32c_intel
alias crypto-crc32c crc32c_intel
alias crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias crypto-xxhash64 xxhash_generic
alias xxhash64 xxhash_generic
alias crypto-blake2b-256 blake2b_generic
alias blake2b-256 blake2b_generic
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias hid:b*g0001v*p* hid_generic
alias fs-[a-c]tr-fs btrfs
`
	fixtureBuiltin = `kernel/crypto/sha256_generic.ko
kernel/fs/nls/nls_base.ko
`
	fixtureBuiltinModinfo = "sha256_generic.alias=crypto-sha256\x00sha256_generic.alias=sha256\x00sha256_generic.license=GPL\x00nls_base.license=GPL\x00"
)

func fixtureDB(t *testing.T) *DB {
	t.Helper()
	db := NewDB()
	must(t, db.ParseDep(strings.NewReader(fixtureDep)))
	must(t, db.ParseSoftdep(strings.NewReader(fixtureSoftdep)))
	must(t, db.ParseAlias(strings.NewReader(fixtureAlias)))
	must(t, db.ParseBuiltin(strings.NewReader(fixtureBuiltin)))
	db.ParseBuiltinModinfo([]byte(fixtureBuiltinModinfo))
	db.finish()
	return db
}

// checkOrder fails unless every module in load comes after each module in
// before[module].
func checkOrder(t *testing.T, load []string, before map[string][]string) {
	t.Helper()
	for m, deps := range before {
		im := slices.Index(load, m)
		if im < 0 {
			t.Errorf("%s not in load list %v", m, load)
			continue
		}
		for _, d := range deps {
			id := slices.Index(load, d)
			if id < 0 {
				t.Errorf("%s (needed by %s) not in load list %v", d, m, load)
			} else if id > im {
				t.Errorf("%s loads before its dependency %s: %v", m, d, load)
			}
		}
	}
}

func TestLookup(t *testing.T) {
	db := fixtureDB(t)
	tests := []struct {
		name    string
		mods    []string
		builtin bool
	}{
		{"btrfs", []string{"btrfs"}, false},
		{"usb-storage", []string{"usb_storage"}, false}, // '-' and '_' are the same
		{"usb_storage", []string{"usb_storage"}, false},
		{"crc32c-intel", []string{"crc32c_intel"}, false}, // module name, normalised
		{"crc32c", []string{"crc32c_generic", "crc32c_intel"}, false},
		{"crypto-crc32c", []string{"crc32c_generic", "crc32c_intel"}, false},
		{"xxhash64", []string{"xxhash_generic"}, false},
		{"usb:v1234p5678d0100dc00dsc00dp00ic08isc06ip50in00", []string{"usb_storage"}, false}, // glob alias
		{"fs-btr-fs", []string{"btrfs"}, false},                                               // '-' outside [...] normalised on both sides
		{"fs_btr_fs", []string{"btrfs"}, false},                                               //
		{"sha256", nil, true},                                                                 // built-in alias (modules.builtin.modinfo)
		{"sha256_generic", nil, true},                                                         // built-in name (modules.builtin)
		{"nls-base", nil, true},                                                               //
		{"zfs", []string{"zfs"}, false},                                                       // compressed, under updates/
		{"nosuchthing", nil, false},                                                           //
		{"fs-dtr-fs", nil, false},                                                             // outside the class
	}
	for _, tt := range tests {
		mods, builtin := db.Lookup(tt.name)
		if !slices.Equal(mods, tt.mods) || builtin != tt.builtin {
			t.Errorf("Lookup(%q) = %v, %v; want %v, %v", tt.name, mods, builtin, tt.mods, tt.builtin)
		}
	}
	if p, _ := db.Path("zfs"); p != "updates/dkms/zfs.ko.xz" {
		t.Errorf("Path(zfs) = %q", p)
	}
}

func TestResolveBtrfsClosure(t *testing.T) {
	db := fixtureDB(t)
	plan, err := db.Resolve([]Request{{Name: "btrfs", Required: true}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"blake2b_generic", "xxhash_generic", "crc32c_generic", "crc32c_intel", "xor", "raid6_pq", "libcrc32c", "btrfs"}
	if got := slices.Sorted(slices.Values(plan.Load)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("load set = %v, want %v", plan.Load, want)
	}
	checkOrder(t, plan.Load, map[string][]string{
		"btrfs":     {"xor", "raid6_pq", "libcrc32c", "blake2b_generic", "xxhash_generic", "crc32c_generic", "crc32c_intel"},
		"libcrc32c": {"crc32c_generic", "crc32c_intel"},
	})
	if len(plan.Missing) != 0 || len(plan.Builtin) != 0 {
		t.Errorf("missing %v builtin %v; sha256 is built in and must not be reported", plan.Missing, plan.Builtin)
	}
}

func TestResolveOrderAndNames(t *testing.T) {
	db := fixtureDB(t)
	plan, err := db.Resolve([]Request{
		{Name: "uas"}, {Name: "usb-storage"}, {Name: "hid-generic"},
		{Name: "sha256"}, {Name: "not_here"}, {Name: "usb_storage", Required: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, plan.Load, map[string][]string{
		"uas":         {"usb_storage", "scsi_mod", "usbcore", "usb_common"},
		"usb_storage": {"scsi_mod", "usbcore", "usb_common"},
		"usbcore":     {"usb_common"},
		"hid_generic": {"hid"},
	})
	for _, m := range plan.Load {
		if n := strings.Count(strings.Join(plan.Load, " ")+" ", m+" "); n != 1 {
			t.Errorf("%s listed %d times in %v", m, n, plan.Load)
		}
	}
	if !slices.Equal(plan.Builtin, []string{"sha256"}) {
		t.Errorf("Builtin = %v", plan.Builtin)
	}
	if !slices.Equal(plan.Missing, []string{"not_here"}) {
		t.Errorf("Missing = %v", plan.Missing)
	}
}

func TestResolvePostSoftdep(t *testing.T) {
	db := fixtureDB(t)
	plan, err := db.Resolve([]Request{{Name: "hid_generic", Required: true}})
	if err != nil {
		t.Fatal(err)
	}
	ih, is := slices.Index(plan.Load, "hid_generic"), slices.Index(plan.Load, "usb_storage")
	if ih < 0 || is < 0 || is < ih {
		t.Errorf("post: soft dependency usb_storage must come after hid_generic: %v", plan.Load)
	}
}

func TestResolveRequiredMissing(t *testing.T) {
	db := fixtureDB(t)
	_, err := db.Resolve([]Request{{Name: "btrfs"}, {Name: "e1000e", Required: true}})
	if !errors.Is(err, ErrModuleNotFound) || !strings.Contains(err.Error(), `"e1000e"`) {
		t.Fatalf("err = %v, want ErrModuleNotFound naming e1000e", err)
	}
}

func TestResolveCycles(t *testing.T) {
	t.Run("soft cycle is not followed", func(t *testing.T) {
		db := NewDB()
		must(t, db.ParseDep(strings.NewReader("a.ko: b.ko\nb.ko:\nc.ko:\n")))
		must(t, db.ParseSoftdep(strings.NewReader("softdep b pre: c\nsoftdep c pre: a\n")))
		plan, err := db.Resolve([]Request{{Name: "a", Required: true}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(plan.Load, []string{"c", "b", "a"}) {
			t.Errorf("Load = %v, want [c b a]", plan.Load)
		}
	})
	t.Run("hard cycle is an error", func(t *testing.T) {
		db := NewDB()
		must(t, db.ParseDep(strings.NewReader("a.ko: b.ko\nb.ko: a.ko\n")))
		_, err := db.Resolve([]Request{{Name: "a", Required: true}})
		if err == nil || !strings.Contains(err.Error(), "cycle: a -> b -> a") {
			t.Fatalf("err = %v, want a cycle error", err)
		}
	})
	t.Run("self soft dependency", func(t *testing.T) {
		db := NewDB()
		must(t, db.ParseDep(strings.NewReader("a.ko:\n")))
		must(t, db.ParseSoftdep(strings.NewReader("softdep a pre: a post: a\n")))
		plan, err := db.Resolve([]Request{{Name: "a", Required: true}})
		if err != nil || !slices.Equal(plan.Load, []string{"a"}) {
			t.Fatalf("plan %v err %v", plan, err)
		}
	})
}

func TestParseSoftdepIgnoresWordsBeforeMode(t *testing.T) {
	db := fixtureDB(t)
	if got := db.softPre["cifs"]; len(got) != 0 {
		t.Errorf(`"softdep cifs gcm" gave pre %v; kmod ignores words before pre:/post:`, got)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		parse func(*DB) error
		want  string
	}{
		{"dep without colon", func(db *DB) error { return db.ParseDep(strings.NewReader("kernel/a.ko kernel/b.ko\n")) }, "modules.dep line 1"},
		{"dep not a module", func(db *DB) error { return db.ParseDep(strings.NewReader("\nkernel/a.txt:\n")) }, "modules.dep line 2"},
		{"alias fields", func(db *DB) error { return db.ParseAlias(strings.NewReader("alias onlyone\n")) }, "modules.alias line 1"},
		{"softdep keyword", func(db *DB) error { return db.ParseSoftdep(strings.NewReader("softdeps x pre: y\n")) }, "modules.softdep line 1"},
		{"builtin not a module", func(db *DB) error { return db.ParseBuiltin(strings.NewReader("kernel/x\n")) }, "modules.builtin line 1"},
	}
	for _, tt := range tests {
		err := tt.parse(NewDB())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

func TestAddModinfo(t *testing.T) {
	db := NewDB()
	db.AddModinfo("kernel/fs/btrfs/btrfs.ko.xz", []byte("license=GPL\x00depends=libcrc32c,raid6_pq,xor\x00softdep=pre: crc32c post: zz\x00alias=fs-btrfs\x00alias=devname:btrfs-control\x00\x00"))
	db.AddModinfo("kernel/lib/libcrc32c.ko", []byte("depends=\x00"))
	db.AddModinfo("extra/libcrc32c.ko", []byte("depends=bogus\x00"))      // lower search rank: ignored
	db.AddModinfo("updates/dkms/xor.ko", []byte("depends=\x00"))          // preferred over kernel/
	db.AddModinfo("kernel/crypto/xor.ko", []byte("depends=raid6_pq\x00")) //
	db.finish()
	if got := db.deps["btrfs"]; !slices.Equal(got, []string{"libcrc32c", "raid6_pq", "xor"}) {
		t.Errorf("deps = %v", got)
	}
	if db.deps["libcrc32c"] != nil {
		t.Errorf("libcrc32c deps = %v; extra/ must not override kernel/", db.deps["libcrc32c"])
	}
	if p, _ := db.Path("xor"); p != "updates/dkms/xor.ko" || db.deps["xor"] != nil {
		t.Errorf("xor = %q %v; updates/ must win", p, db.deps["xor"])
	}
	if !slices.Equal(db.softPre["btrfs"], []string{"crc32c"}) || !slices.Equal(db.softPost["btrfs"], []string{"zz"}) {
		t.Errorf("softdeps pre %v post %v", db.softPre["btrfs"], db.softPost["btrfs"])
	}
	if mods, _ := db.Lookup("fs-btrfs"); !slices.Equal(mods, []string{"btrfs"}) {
		t.Errorf("alias fs-btrfs -> %v", mods)
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"crc32c", "crc32c", true},
		{"crc32c", "crc32", false},
		{"pci:v00008086d*sv*", "pci:v00008086d00001234sv0000", true},
		{"of:N*T*Cfoo/bar", "of:NxTyCfoo/bar", true},
		{"a*z", "a/b/z", true}, // fnmatch without FNM_PATHNAME: '*' crosses '/'
		{"x?z", "x/z", true},
		{"v[0-9]", "v7", true},
		{"v[0-9]", "vx", false},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.name); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestNamesFromPaths(t *testing.T) {
	tests := []struct{ path, name, plain string }{
		{"kernel/fs/btrfs/btrfs.ko", "btrfs", "kernel/fs/btrfs/btrfs.ko"},
		{"kernel/drivers/usb/storage/usb-storage.ko.xz", "usb_storage", "kernel/drivers/usb/storage/usb-storage.ko"},
		{"kernel/x/crc32c-intel.ko.zst", "crc32c_intel", "kernel/x/crc32c-intel.ko"},
		{"kernel/x/y.ko.gz", "y", "kernel/x/y.ko"},
		{"kernel/x/modules.order", "", "kernel/x/modules.order"},
	}
	for _, tt := range tests {
		if got := nameFromPath(tt.path); got != tt.name {
			t.Errorf("nameFromPath(%q) = %q, want %q", tt.path, got, tt.name)
		}
		if got := plainPath(tt.path); got != tt.plain {
			t.Errorf("plainPath(%q) = %q, want %q", tt.path, got, tt.plain)
		}
	}
}
