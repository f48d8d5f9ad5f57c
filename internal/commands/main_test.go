package commands

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/dockroot/dockroot/internal/testenv"
)

// testVersion is what the tests stamp, as the build stamps main.version.
const testVersion = "v0.0.0-test"

func runCLI(env []string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(&Context{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Args: args, Env: env}, testVersion)
	return code, out.String(), errb.String()
}

// standIn builds a stand-in for dockroot-init (testenv.StandInInit).
func standIn(t *testing.T) string {
	t.Helper()
	p, err := testenv.StandInInit(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// emptyKernelRoot is a root with a kernel that has no loadable modules
// (everything built in), which is enough to build an image with just /init.
func emptyKernelRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "lib/modules/6.1.0-1-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := runCLI(nil, "help")
	if code != 0 || !strings.Contains(out, "initramfs") || !strings.Contains(out, "version") || !strings.Contains(out, "Exit codes:") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(nil, "initramfs", "--help")
	for _, want := range []string{"-o FILE", "--module NAME", "--compress ALGO", "Examples:", "dockroot initramfs -o /boot/dockroot.img", "Exit codes:"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("initramfs --help (exit %d) lacks %q", code, want)
		}
	}
	code, out, _ = runCLI(nil, "version")
	if code != 0 || !strings.HasPrefix(out, "dockroot "+testVersion+" (go") {
		t.Errorf("version: exit %d %q", code, out)
	}
	if code, _, _ := runCLI(nil, "version", "extra"); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}

func TestInitramfsUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"initramfs"}, "-o FILE is required"},
		{[]string{"initramfs", "-o", "x", "--compress", "lz4"}, `unknown compression "lz4"`},
		{[]string{"initramfs", "-o", "x", "--modules", "most"}, `--modules: unknown module mode "most": want one of alias, all, hostonly`},
		{[]string{"initramfs", "-o", "x", "extra"}, `unexpected argument "extra"`},
		{[]string{"initramfs", "-o"}, "flag needs an argument"},
	}
	for _, tt := range tests {
		code, out, errs := runCLI(nil, tt.args...)
		if code != 2 || out != "" || !strings.Contains(errs, tt.want) || !strings.Contains(errs, "Usage:") {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s\nwant exit 2 with %q and the usage", tt.args, code, out, errs, tt.want)
		}
	}
}

func TestInitramfsRuntimeErrors(t *testing.T) {
	root := emptyKernelRoot(t)
	out := filepath.Join(t.TempDir(), "img")
	missing := filepath.Join(t.TempDir(), "no-such-init")
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown module", nil, []string{"--init", standIn(t), "--module", "nosuchmod"},
			`dockroot initramfs: resolve modules: kernel 6.1.0-1-test: module not found: "nosuchmod"`},
		// The init binary comes from the Context's environment, not the process's.
		{"DOCKROOT_INIT", []string{"DOCKROOT_INIT=" + missing}, nil, missing},
		{"SOURCE_DATE_EPOCH", []string{"SOURCE_DATE_EPOCH=yesterday"}, []string{"--init", missing}, `SOURCE_DATE_EPOCH="yesterday"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"initramfs", "-o", out, "--root", root}, tt.args...)
			code, stdout, stderr := runCLI(tt.env, args...)
			if code != 1 || stdout != "" || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 with %q", code, stdout, stderr, tt.want)
			}
			if strings.Contains(stderr, "Usage:") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("a runtime error must print one line and no usage:\n%s", stderr)
			}
		})
	}
}

func TestInitramfsBuilds(t *testing.T) {
	root := emptyKernelRoot(t)
	out := filepath.Join(t.TempDir(), "img")
	init := standIn(t)
	code, stdout, stderr := runCLI([]string{"DOCKROOT_INIT=" + init, "SOURCE_DATE_EPOCH=1700000000"},
		"initramfs", "-o", out, "--root", root)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"wrote " + out, "gzip compressed", "kernel 6.1.0-1-test, 0 modules", "not available for this kernel, skipped: btrfs"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	recs := initramfsRecords(t, out)
	found := false
	for _, r := range recs {
		if r.MTime != 1700000000 {
			t.Errorf("%s mtime %d, want SOURCE_DATE_EPOCH from the Context", r.Name, r.MTime)
		}
		found = found || r.Name == "init"
	}
	if !found {
		t.Error("no /init in the image")
	}
}

// initramfsRecords reads a gzip-compressed newc initramfs.
func initramfsRecords(t *testing.T, file string) []cpio.Record {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.EOFReader{RecordReader: cpio.Newc.Reader(bytes.NewReader(raw))})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
