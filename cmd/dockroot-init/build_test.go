package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
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

// The import-graph rules of both binaries (nothing host-only in PID 1) are
// tests/layering.TestImportGraph; the style notes they come from are
// ../shared/STYLE.md beside the repository, "Two binaries, two import graphs".
