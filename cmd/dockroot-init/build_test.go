package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxInitSize is the budget for the PID 1 binary: the initramfs is
// loaded by the boot loader before anything else can run.
const maxInitSize = 8 << 20

// TestStaticBuild builds dockroot-init the way `make build` does, for each
// architecture, and checks what the initramfs relies on: no ELF interpreter
// (nothing to load it with in an initramfs) and the size budget.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice; skipped in -short mode")
	}
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "dockroot-init")
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build for %s: %v\n%s", arch, err, b)
			}
			f, err := elf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s binary has an ELF interpreter: it is not statically linked", arch)
				}
			}
			want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
			if f.Machine != want {
				t.Errorf("machine = %v, want %v", f.Machine, want)
			}
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() > maxInitSize {
				t.Errorf("%s binary is %d bytes, over the %d-byte budget", arch, st.Size(), maxInitSize)
			}
			t.Logf("%s: %.2f MB", arch, float64(st.Size())/(1<<20))
		})
	}
}

// TestImportGraph keeps host-only code out of PID 1: the Docker client, the
// cpio writer, the initramfs builder and the menu renderers belong to
// cmd/dockroot (STYLE.md, "two binaries, two import graphs").
func TestImportGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/moby/",
		"github.com/docker/",
		"github.com/u-root/u-root/pkg/cpio",
		"github.com/dockroot/dockroot/internal/initramfs",
		"github.com/dockroot/dockroot/internal/bootmenu",
		"github.com/dockroot/dockroot/internal/cli",
		"net/http",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range forbidden {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("dockroot-init imports %s (host-only)", dep)
			}
		}
	}
}
