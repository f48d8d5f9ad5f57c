package initramfs

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildChoosesInitByArch: with several dockroot-init binaries (make
// build's bin/dockroot-init and bin/arm64/dockroot-init), the builder puts
// in the one for the kernel's architecture, read from its modules.
func TestBuildChoosesInitByArch(t *testing.T) {
	bins := t.TempDir()
	amd64 := filepath.Join(bins, "dockroot-init")
	arm64 := filepath.Join(bins, "arm64", "dockroot-init")
	must(t, os.MkdirAll(filepath.Dir(arm64), 0o755))
	must(t, os.WriteFile(amd64, fakeExecutable(t, elf.EM_X86_64), 0o755))
	must(t, os.WriteFile(arm64, fakeExecutable(t, elf.EM_AARCH64), 0o755))
	kernel := func(m elf.Machine) string {
		root := t.TempDir()
		writeFiles(t, filepath.Join(root, "lib/modules", testKver), map[string][]byte{
			"kernel/fs/btrfs/btrfs.ko":           fakeModule(t, m, "license=GPL", "name=btrfs", "depends="),
			"kernel/drivers/block/virtio_blk.ko": fakeModule(t, m, "license=GPL", "name=virtio_blk", "depends="),
		})
		return root
	}
	for _, c := range []struct {
		name    string
		kernel  elf.Machine
		choices []string
		want    string // the init chosen, or "error: <part of the message>"
		arch    string
	}{
		{"arm64 kernel", elf.EM_AARCH64, []string{amd64, arm64}, arm64, "arm64"},
		{"amd64 kernel", elf.EM_X86_64, []string{amd64, arm64}, amd64, "amd64"},
		{"arm64 kernel, only an amd64 init", elf.EM_AARCH64, []string{amd64},
			"error: is for arm64, and no dockroot-init for it was found (" + amd64 + " (amd64)): build one (`make build` writes bin/arm64/dockroot-init", ""},
		{"riscv kernel", elf.EM_RISCV, []string{amd64, arm64}, "error: is for EM_RISCV", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "initramfs.img")
			res, err := Build(Options{Output: out, Root: kernel(c.kernel), InitChoices: c.choices, Compress: None})
			if want, isErr := strings.CutPrefix(c.want, "error: "); isErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Build: %v, want an error containing %q", err, want)
				}
				if _, err := os.Stat(out); err == nil {
					t.Error("a failed build wrote its output")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Init != c.want || res.Arch != c.arch {
				t.Errorf("init %s (%s), want %s (%s)", res.Init, res.Arch, c.want, c.arch)
			}
			data, err := os.ReadFile(out)
			must(t, err)
			want, err := os.ReadFile(c.want)
			must(t, err)
			if !strings.Contains(string(data), string(want)) {
				t.Errorf("the archive does not hold %s as /init", c.want)
			}
		})
	}
}
