package initramfs

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/kmod"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

const testKver = "6.1.0-99-test"

func hostMachine() elf.Machine {
	if runtime.GOARCH == "arm64" {
		return elf.EM_AARCH64
	}
	return elf.EM_X86_64
}

// fixtureRoot writes a kernel module tree under a new root: module files
// (some compressed) with their own .modinfo, plus modules.builtin. With
// depmodFiles it also writes modules.dep, modules.softdep and modules.alias
// as depmod would. It returns the root and each module's plain contents by
// its path relative to lib/modules/KVER.
func fixtureRoot(t *testing.T, depmodFiles bool) (string, map[string][]byte) {
	t.Helper()
	m := hostMachine()
	mods := map[string][]string{
		"kernel/fs/btrfs/btrfs.ko.xz":                  {"depends=libcrc32c,xor", "softdep=pre: crc32c xxhash64 sha256"},
		"kernel/lib/libcrc32c.ko.zst":                  {"depends=", "softdep=pre: crc32c"},
		"kernel/crypto/xor.ko.gz":                      {"depends="},
		"kernel/crypto/crc32c_generic.ko":              {"depends=", "alias=crc32c", "alias=crypto-crc32c"},
		"kernel/crypto/xxhash_generic.ko":              {"depends=", "alias=xxhash64"},
		"kernel/drivers/virtio/virtio.ko":              {"depends="},
		"kernel/drivers/virtio/virtio_ring.ko":         {"depends=virtio"},
		"kernel/drivers/block/virtio_blk.ko":           {"depends=virtio,virtio_ring", "alias=virtio:d00000002v*"},
		"kernel/drivers/usb/storage/usb-storage.ko.xz": {"depends="},
		"kernel/drivers/net/ethernet/intel/e1000e.ko":  {"depends="},
	}
	root := t.TempDir()
	dir := filepath.Join(root, "lib/modules", testKver)
	plain := map[string][]byte{}
	files := map[string][]byte{}
	for p, info := range mods {
		data := fakeModule(t, m, append([]string{"license=GPL", "name=" + nameFromPath(p)}, info...)...)
		plain[plainPath(p)] = data
		files[p] = compressAs(t, p, data)
	}
	files["modules.builtin"] = []byte("kernel/drivers/virtio/virtio_pci.ko\nkernel/crypto/sha256_generic.ko\n")
	files["modules.builtin.modinfo"] = []byte("sha256_generic.alias=sha256\x00")
	if depmodFiles {
		files["modules.dep"] = []byte(`kernel/fs/btrfs/btrfs.ko.xz: kernel/lib/libcrc32c.ko.zst kernel/crypto/xor.ko.gz
kernel/lib/libcrc32c.ko.zst:
kernel/crypto/xor.ko.gz:
kernel/crypto/crc32c_generic.ko:
kernel/crypto/xxhash_generic.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/usb/storage/usb-storage.ko.xz:
kernel/drivers/net/ethernet/intel/e1000e.ko:
`)
		files["modules.softdep"] = []byte("softdep btrfs pre: crc32c xxhash64 sha256\nsoftdep libcrc32c pre: crc32c\n")
		files["modules.alias"] = []byte("alias crc32c crc32c_generic\nalias crypto-crc32c crc32c_generic\nalias xxhash64 xxhash_generic\nalias virtio:d00000002v* virtio_blk\n")
	}
	writeFiles(t, dir, files)
	return root, plain
}

// unpack reads a built initramfs back into records by name.
func unpack(t *testing.T, file string) map[string]cpio.Record {
	t.Helper()
	data, err := os.ReadFile(file)
	must(t, err)
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		data = gunzip(t, data)
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		r, err := zstd.NewReader(bytes.NewReader(data))
		must(t, err)
		data, err = io.ReadAll(r)
		r.Close()
		must(t, err)
	}
	return readCPIO(t, data)
}

func gunzip(t *testing.T, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zr, err := gzip.NewReader(bytes.NewReader(data))
	must(t, err)
	_, err = io.Copy(&out, zr)
	must(t, err)
	return out.Bytes()
}

func TestBuild(t *testing.T) {
	for _, depmodFiles := range []bool{false, true} {
		name := map[bool]string{false: "from module .modinfo", true: "from depmod files"}[depmodFiles]
		t.Run(name, func(t *testing.T) {
			root, plain := fixtureRoot(t, depmodFiles)
			out := filepath.Join(t.TempDir(), "initrd.img")
			cfg := filepath.Join(t.TempDir(), "dockroot.json")
			must(t, os.WriteFile(cfg, []byte(`{"docker_image": "desk:stable", "colour": "blue"}`), 0o644))
			init := standInInit(t)

			ancestor := filepath.Join(t.TempDir(), "docker-btrfs.json")
			must(t, os.WriteFile(ancestor, []byte(`{"docker_image": "archlinux/base", "docker_tag": "latest"}`), 0o644))

			res, err := Build(Options{Output: out, Root: root, Modules: []string{"e1000e"}, ConfigFile: cfg, DockerBtrfsJSON: ancestor, InitBinary: init})
			if err != nil {
				t.Fatal(err)
			}

			wantList := `# Kernel modules for dockroot-init to load, in this order (dependencies first).
# One path per line, relative to /lib/modules/6.1.0-99-test/. Written by ` + "`dockroot initramfs`" + `.
# kernel: 6.1.0-99-test
kernel/crypto/crc32c_generic.ko
kernel/crypto/xxhash_generic.ko
kernel/lib/libcrc32c.ko
kernel/crypto/xor.ko
kernel/fs/btrfs/btrfs.ko
kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko
kernel/drivers/usb/storage/usb-storage.ko
kernel/drivers/net/ethernet/intel/e1000e.ko
`
			recs := unpack(t, out)
			if got := content(t, recs[layout.ModulesList]); got != wantList {
				t.Errorf("modules.list:\n%s\nwant:\n%s", got, wantList)
			}
			for p, data := range plain {
				rec, ok := recs["lib/modules/"+testKver+"/"+p]
				if !ok {
					t.Errorf("module %s missing from the archive", p)
				} else if content(t, rec) != string(data) {
					t.Errorf("module %s is not the decompressed original", p)
				}
			}
			initData, err := os.ReadFile(init)
			must(t, err)
			if r := recs["init"]; r.Mode != cpio.S_IFREG|0o755 || content(t, r) != string(initData) {
				t.Errorf("/init mode %#o, or content differs from the init binary", r.Mode)
			}
			if got := content(t, recs[layout.DockrootJSON]); got != `{"docker_image": "desk:stable", "colour": "blue"}` {
				t.Errorf("etc/dockroot.json = %q", got)
			}
			if got := content(t, recs[layout.DockerBtrfsJSON]); got != `{"docker_image": "archlinux/base", "docker_tag": "latest"}` {
				t.Errorf("etc/docker-btrfs.json = %q", got)
			}
			if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], `unknown field "colour"`) {
				t.Errorf("Warnings = %q, want the unknown config field", res.Warnings)
			}
			if c := recs["dev/console"]; c.Mode != cpio.S_IFCHR|0o600 || c.Rmajor != 5 || c.Rminor != 1 {
				t.Errorf("dev/console = %#o %d:%d", c.Mode, c.Rmajor, c.Rminor)
			}
			for _, d := range mountPoints {
				if recs[d].Mode&cpio.S_IFMT != cpio.S_IFDIR {
					t.Errorf("mount point /%s missing", d)
				}
			}
			if _, ok := recs[BusyboxPath]; ok {
				t.Errorf("busybox added without Shell")
			}

			if !slices.Equal(res.Builtin, []string{"virtio_pci"}) {
				t.Errorf("Builtin = %v", res.Builtin)
			}
			for _, s := range []string{"ext4", "nvme", "ahci"} {
				if !slices.Contains(res.Skipped, s) {
					t.Errorf("Skipped %v lacks %s", res.Skipped, s)
				}
			}
			if slices.Contains(res.Skipped, "sha256") {
				t.Errorf("sha256 is built in (modules.builtin.modinfo) but reported skipped")
			}
			if len(res.Modules) != 10 || res.KernelVersion != testKver || res.Compression != Gzip {
				t.Errorf("result: %d modules, kernel %s, %s", len(res.Modules), res.KernelVersion, res.Compression)
			}
			st, err := os.Stat(out)
			must(t, err)
			if st.Size() != res.Size || res.UncompressedSize <= res.Size || st.Mode().Perm() != 0o644 {
				t.Errorf("size %d (file %d), raw %d, mode %v", res.Size, st.Size(), res.UncompressedSize, st.Mode())
			}
			if !slices.Equal(res.Files, sortedKeys(recs)) {
				t.Errorf("Result.Files differs from the archive:\n%v\n%v", res.Files, sortedKeys(recs))
			}
			assertNoTemp(t, filepath.Dir(out))
		})
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestBuildDeterministic(t *testing.T) {
	root, _ := fixtureRoot(t, false)
	dir := t.TempDir()
	build := func(name string, mtime int64, comp string) []byte {
		p := filepath.Join(dir, name)
		_, err := Build(Options{Output: p, Root: root, InitBinary: standInInit(t), ModTime: mtime, Compress: comp})
		must(t, err)
		data, err := os.ReadFile(p)
		must(t, err)
		return data
	}
	for _, c := range Compressions {
		if !bytes.Equal(build("a", 0, c), build("b", 0, c)) {
			t.Errorf("%s: two builds of the same inputs differ", c)
		}
	}
	build("epoch", 1700000000, None)
	for name, r := range unpack(t, filepath.Join(dir, "epoch")) {
		if r.MTime != 1700000000 {
			t.Errorf("%s mtime %d, want SOURCE_DATE_EPOCH", name, r.MTime)
			break
		}
	}
}

func TestBuildErrors(t *testing.T) {
	root, _ := fixtureRoot(t, false)
	dir := t.TempDir()
	badJSON := filepath.Join(dir, "bad.json")
	must(t, os.WriteFile(badJSON, []byte(`{"docker_image": `), 0o644))
	arrayJSON := filepath.Join(dir, "array.json")
	must(t, os.WriteFile(arrayJSON, []byte(`["x"]`), 0o644))
	badValue := filepath.Join(dir, "value.json")
	must(t, os.WriteFile(badValue, []byte(`{"keep": "many"}`), 0o644))
	ambiguous := filepath.Join(dir, "docker-btrfs.json")
	must(t, os.WriteFile(ambiguous, []byte(`{"docker_image": "desk:1", "docker_tag": "2"}`), 0o644))

	foreignRoot := t.TempDir()
	writeFiles(t, filepath.Join(foreignRoot, "lib/modules", testKver), map[string][]byte{
		"kernel/fs/btrfs/btrfs.ko": fakeModule(t, elf.EM_RISCV, "depends="),
	})

	init := standInInit(t)
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"unknown module", Options{Root: root, Modules: []string{"nosuchmod"}},
			[]string{`"nosuchmod"`, filepath.Join(root, "lib/modules", testKver), "modules.dep or the module files"}},
		{"unknown kernel", Options{Root: root, KernelVersion: "5.10.0-1-amd64"},
			[]string{"kernel 5.10.0-1-amd64 has no modules", "available: " + testKver}},
		{"no kernel", Options{Root: dir}, []string{"no kernel modules under " + dir}},
		{"bad config", Options{Root: root, ConfigFile: badJSON}, []string{"add config: invalid config: " + badJSON, "unexpected end of JSON input"}},
		{"config not an object", Options{Root: root, ConfigFile: arrayJSON}, []string{arrayJSON, "JSON object"}},
		{"config value", Options{Root: root, ConfigFile: badValue}, []string{badValue, `"keep" must be a whole number`}},
		{"missing config", Options{Root: root, ConfigFile: filepath.Join(dir, "nope.json")}, []string{"nope.json"}},
		{"ancestor config", Options{Root: root, DockerBtrfsJSON: ambiguous}, []string{ambiguous, `docker_image "desk:1" already has a tag or digest, and docker_tag is "2" too`}},
		{"ancestor config type", Options{Root: root, DockerBtrfsJSON: arrayJSON}, []string{arrayJSON, "JSON object"}},
		{"missing init", Options{Root: root, InitBinary: filepath.Join(dir, "nope")}, []string{"make build"}},
		{"compression", Options{Root: root, Compress: "lz4"}, []string{`unknown compression "lz4"`}},
		{"architecture mismatch", Options{Root: foreignRoot}, []string{"btrfs.ko is for EM_RISCV", "init binary"}},
		{"dynamic busybox", Options{Root: root, Shell: true, Busybox: "/bin/true"}, []string{"dynamically linked", "busybox-static"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.img")
			must(t, os.WriteFile(out, []byte("previous image"), 0o644))
			tt.opts.Output = out
			if tt.opts.InitBinary == "" {
				tt.opts.InitBinary = init
			}
			_, err := Build(tt.opts)
			if err == nil {
				t.Fatal("Build succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got, _ := os.ReadFile(out); string(got) != "previous image" {
				t.Errorf("a failed build replaced the previous output")
			}
			assertNoTemp(t, dir)
		})
	}
}

func TestBuildShell(t *testing.T) {
	bb := "/bin/busybox"
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Skip("no /bin/busybox (Debian busybox-static) on this host")
	}
	if _, err := checkStaticExecutable("busybox", bb, data); err != nil {
		t.Skipf("host busybox is not static: %v", err)
	}
	root, _ := fixtureRoot(t, false)
	out := filepath.Join(t.TempDir(), "shell.img")
	res, err := Build(Options{Output: out, Root: root, InitBinary: standInInit(t), Shell: true, Compress: Zstd})
	if err != nil {
		t.Fatal(err)
	}
	recs := unpack(t, out)
	if r := recs[BusyboxPath]; r.Mode != cpio.S_IFREG|0o755 || content(t, r) != string(data) {
		t.Errorf("/bin/busybox mode %#o or content wrong", r.Mode)
	}
	if r := recs["bin/sh"]; r.Mode != cpio.S_IFLNK|0o777 || content(t, r) != "busybox" {
		t.Errorf("/bin/sh = %#o -> %q", r.Mode, content(t, r))
	}
	// The fixture kernel has no usbhid: the shell's keyboard modules are
	// optional like the other defaults.
	if !slices.Contains(res.Skipped, "usbhid") {
		t.Errorf("Skipped = %v, want usbhid", res.Skipped)
	}
}

// internal/kmod parses the list this package writes into the same paths.
func TestModulesListParsesWithKmod(t *testing.T) {
	root, _ := fixtureRoot(t, false)
	out := filepath.Join(t.TempDir(), "img")
	res, err := Build(Options{Output: out, Root: root, InitBinary: standInInit(t), Compress: None})
	must(t, err)
	mods, err := kmod.ParseList(strings.NewReader(content(t, unpack(t, out)[layout.ModulesList])))
	must(t, err)
	var got []string
	for _, m := range mods {
		got = append(got, m.Path)
	}
	if !slices.Equal(got, modulePaths(res.Modules)) {
		t.Errorf("kmod reads %v, builder wrote %v", got, modulePaths(res.Modules))
	}
}
