package initramfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/kernel"
	"github.com/dockroot/dockroot/internal/layout"
)

// debianKernelRoot returns an unpacked Debian kernel package for arch (a
// root with boot/ and lib/modules/), fetched by tests/vm/fetch-kernel.sh
// into the cache shared with the VM tests. It skips when there is none and
// it cannot be fetched (-short never downloads).
func debianKernelRoot(t *testing.T, arch string) string {
	t.Helper()
	repo, err := filepath.Abs("../..")
	must(t, err)
	cache := os.Getenv("DOCKROOT_CACHE")
	if cache == "" {
		cache = filepath.Join(repo, ".cache")
	}
	cache = filepath.Join(cache, "kernel")
	if testing.Short() {
		// Debian's kernel packages end in the architecture as Go names it:
		// linux-image-6.1.0-57-arm64_6.1.192-3.
		done, _ := filepath.Glob(filepath.Join(cache, "linux-image-*-"+arch+"_*", ".complete"))
		if len(done) == 0 {
			t.Skipf("no Debian kernel in %s and -short does not download one (run tests/vm/fetch-kernel.sh %s)", cache, cache)
		}
		slices.Sort(done)
		return filepath.Dir(done[len(done)-1])
	}
	var stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(repo, "tests/vm/fetch-kernel.sh"), cache)
	cmd.Env = append(os.Environ(), "KERNEL_ARCH="+arch)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("no Debian kernel: KERNEL_ARCH=%s fetch-kernel.sh %s: %v\n%s", arch, cache, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// TestDebianArm64Kernel builds from Debian's arm64 kernel tree with make
// build's two init binaries: the arm64 one goes in, with the arm64
// modules the virt board and boards need (virtio over PCI and MMIO, btrfs
// and its checksums).
func TestDebianArm64Kernel(t *testing.T) {
	root := debianKernelRoot(t, "arm64")
	bins := t.TempDir()
	amd64, arm64 := filepath.Join(bins, "dockroot-init"), filepath.Join(bins, "arm64-dockroot-init")
	must(t, os.WriteFile(amd64, fakeExecutable(t, elf.EM_X86_64), 0o755))
	must(t, os.WriteFile(arm64, fakeExecutable(t, elf.EM_AARCH64), 0o755))
	res, err := Build(Options{Output: filepath.Join(t.TempDir(), "initrd"), Root: root, InitChoices: []string{amd64, arm64}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Init != arm64 || res.Arch != "arm64" || !strings.HasSuffix(res.KernelVersion, "-arm64") {
		t.Errorf("kernel %s: init %s (%s), want %s (arm64)", res.KernelVersion, res.Init, res.Arch, arm64)
	}
	names := moduleNames(res.Modules)
	for _, want := range []string{"btrfs", "blake2b_generic", "xxhash_generic", "virtio_pci", "virtio_mmio", "virtio_blk", "ext4", "nvme", "usb_storage"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s not in the arm64 initramfs: %v", want, names)
		}
	}
	for _, m := range res.Modules {
		if !strings.Contains(m.Source, "-arm64/") {
			t.Errorf("module %s read from %s, outside the arm64 kernel's tree", m.Name, m.Source)
		}
	}
}

func TestDebianKernel(t *testing.T) {
	root := debianKernelRoot(t, runtime.GOARCH)
	dir := t.TempDir()
	init := standInInit(t)

	for _, comp := range []string{Gzip, Zstd} {
		out := filepath.Join(dir, "initrd."+comp)
		res, err := Build(Options{Output: out, Root: root, InitBinary: init, Compress: comp})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: kernel %s, %d modules, %.2f MB (%.2f MB unpacked)", comp, res.KernelVersion, len(res.Modules),
			float64(res.Size)/1e6, float64(res.UncompressedSize)/1e6)

		// "A typical virtio + btrfs initramfs is a few MB."
		if res.Size < 1e6 || res.Size > 16e6 {
			t.Errorf("%s: compressed size %d bytes, want a few MB", comp, res.Size)
		}
		recs := unpack(t, out)
		list := parseModulesList(t, content(t, recs[layout.ModulesList]))
		if !slices.Equal(list, modulePaths(res.Modules)) {
			t.Errorf("modules.list differs from Result.Modules")
		}
		for _, p := range list {
			if _, ok := recs["lib/modules/"+res.KernelVersion+"/"+p]; !ok {
				t.Errorf("modules.list names %s, which is not in the archive", p)
			}
		}
		names := moduleNames(res.Modules)
		// btrfs's soft dependencies on Debian 6.1: blake2b-256, sha256,
		// xxhash64, crypto-crc32c (the last three may be built in elsewhere).
		for _, want := range [][]string{{"btrfs"}, {"blake2b_generic"}, {"xxhash_generic"}, {"crc32c_generic", "crc32c_intel"},
			{"libcrc32c"}, {"virtio_blk"}, {"virtio_pci"}, {"ext4"}, {"nvme"}, {"ahci"}, {"usb_storage"}} {
			if !slices.ContainsFunc(want, func(n string) bool { return slices.Contains(names, n) }) {
				t.Errorf("%s: none of %v in modules.list", comp, want)
			}
		}
		before := func(dep, mod string) {
			if i, j := slices.Index(names, dep), slices.Index(names, mod); i < 0 || j < 0 || i > j {
				t.Errorf("%s must load before %s: %v", dep, mod, names)
			}
		}
		for _, d := range []string{"blake2b_generic", "xxhash_generic", "libcrc32c", "xor", "raid6_pq", "zstd_compress"} {
			before(d, "btrfs")
		}
		for _, d := range []string{"virtio", "virtio_ring"} {
			before(d, "virtio_blk")
		}

		if comp == Zstd {
			if _, err := exec.LookPath("zstd"); err == nil {
				if out, err := exec.Command("zstd", "-t", out).CombinedOutput(); err != nil {
					t.Errorf("zstd -t: %v\n%s", err, out)
				}
			}
		}
	}

	// Every module after all of its hard dependencies, by an independent
	// database: the one depmod itself derives from the same tree.
	if _, err := exec.LookPath("depmod"); err != nil {
		t.Log("depmod not installed; skipping the cross-check with kmod")
		return
	}
	trees, err := kernel.Find(os.DirFS(root))
	must(t, err)
	kver := trees[0].Version
	dm, err := exec.Command("depmod", "-n", "-b", root, kver).Output()
	if err != nil {
		t.Fatalf("depmod -n -b %s %s: %v", root, kver, err)
	}
	ref := depmodDB(t, dm)
	rootFS, err := os.OpenRoot(root)
	must(t, err)
	defer rootFS.Close()
	scanned, err := LoadDB(rootFS.FS(), trees[0].Dir)
	must(t, err)
	if scanned.Len() != ref.Len() {
		t.Errorf("modinfo scan found %d modules, depmod %d", scanned.Len(), ref.Len())
	}
	var reqs []Request
	for _, m := range append(slices.Clone(DefaultModules), ShellModules...) {
		reqs = append(reqs, Request{Name: m})
	}
	want, err := ref.Resolve(reqs)
	must(t, err)
	got, err := scanned.Resolve(reqs)
	must(t, err)
	if !slices.Equal(slices.Sorted(slices.Values(got.Load)), slices.Sorted(slices.Values(want.Load))) {
		t.Errorf("module set from .modinfo differs from depmod's:\n got %v\nwant %v", got.Load, want.Load)
	}
	for i, m := range got.Load {
		for _, d := range ref.deps[m] {
			if j := slices.Index(got.Load, d); j < 0 || j > i {
				t.Errorf("%s loads before its modules.dep dependency %s", m, d)
			}
		}
	}
}

func parseModulesList(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func modulePaths(ms []Module) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Path)
	}
	return out
}

func moduleNames(ms []Module) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

var depLine = regexp.MustCompile(`^\S+\.ko(\.\w+)?:`)

// depmodDB parses `depmod -n` output: modules.dep, modules.alias,
// modules.softdep and more, concatenated; each line's shape says which.
func depmodDB(t *testing.T, out []byte) *DB {
	t.Helper()
	var dep, alias, soft strings.Builder
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "alias "):
			alias.WriteString(l + "\n")
		case strings.HasPrefix(l, "softdep "):
			soft.WriteString(l + "\n")
		case depLine.MatchString(l):
			dep.WriteString(l + "\n")
		}
	}
	db := NewDB()
	must(t, db.ParseDep(strings.NewReader(dep.String())))
	must(t, db.ParseAlias(strings.NewReader(alias.String())))
	must(t, db.ParseSoftdep(strings.NewReader(soft.String())))
	db.finish()
	return db
}
