// Package testenv gates and builds the real environments dockroot's root and
// VM test tiers run in: loop-mounted btrfs filesystems and a private dockerd.
//
// Every resource is released through t.Cleanup, in reverse order of
// creation, even when the test fails: a machine may have only eight loop
// devices and a leaked dockerd keeps its mounts busy.
//
// It is test support: it may import libraries, never the binaries (cmd/...)
// or the boot steps' internals.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// RequireRoot skips t unless the root tier can run: uid 0, the tools it needs
// on PATH, and DOCKROOT_TEST_ROOT not set to 0.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Getenv("DOCKROOT_TEST_ROOT") == "0" {
		t.Skip("root tier disabled by DOCKROOT_TEST_ROOT=0")
	}
	if os.Geteuid() != 0 {
		t.Skip("root tier: needs uid 0 for loop devices and btrfs ioctls (run `make test-root` as root)")
	}
	for _, tool := range append([]string{"mkfs.btrfs", "losetup", "mount", "umount"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("root tier: %s not found on PATH (run `make deps`)", tool)
		}
	}
}

// RequireVM skips t unless the VM tier can run: the root tier, qemu, and
// neither -short nor DOCKROOT_TEST_VM=0.
func RequireVM(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("VM tier skipped in -short mode")
	}
	if os.Getenv("DOCKROOT_TEST_VM") == "0" {
		t.Skip("VM tier disabled by DOCKROOT_TEST_VM=0")
	}
	RequireRoot(t, "qemu-system-x86_64")
}

// RequireFullVM skips t unless the VM tier runs in full
// (DOCKROOT_TEST_VM=full, which `make test-full` sets): the boots that
// `make test` leaves out to keep CI under its budget. what says, for the
// skip message, what the test proves.
func RequireFullVM(t testing.TB, what string) {
	t.Helper()
	RequireVM(t)
	if os.Getenv("DOCKROOT_TEST_VM") != "full" {
		t.Skipf("%s: part of the full VM tier; run `make test-full` (DOCKROOT_TEST_VM=full)", what)
	}
}

// Run runs argv and returns its combined output, failing t with the argv and
// output when it exits non-zero.
func Run(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// Output runs argv and returns its stdout; the error names argv and carries
// its stderr. It is Run for code without a testing.TB: the VM test kit and
// the benchmark.
func Output(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// StandInInit builds a tiny static Go program into dir and returns its
// path: a stand-in for dockroot-init in tests of the initramfs builder, with
// the properties it checks (a static ELF executable for this machine), not
// a copy of the real init.
func StandInInit(dir string) (string, error) {
	src := "package main\n\nfunc main() { println(\"stand-in init\") }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module standin\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gobin, "build", "-o", "init", ".")
	cmd.Dir = dir
	// GOFLAGS is cleared so that the caller's (e.g. -mod=mod) does not
	// apply to this module, which has no dependencies.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build stand-in init in %s: %w\n%s", dir, err, out)
	}
	return filepath.Join(dir, "init"), nil
}

// Btrfs is a loop-mounted btrfs filesystem mounted at its top level.
type Btrfs struct {
	Image string // backing file
	Loop  string // /dev/loopN
	Mnt   string // mount point of subvolid=5
}

// NewBtrfs makes a sparse file of sizeMB, formats it btrfs with label, and
// mounts its top level. Unmount and loop detach are registered as cleanup.
func NewBtrfs(t testing.TB, sizeMB int, label string) *Btrfs {
	t.Helper()
	dir := t.TempDir()
	b := &Btrfs{Image: filepath.Join(dir, "btrfs.img"), Mnt: filepath.Join(dir, "mnt")}
	f, err := os.Create(b.Image)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(sizeMB) << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"mkfs.btrfs", "-q", "-f"}
	if label != "" {
		args = append(args, "-L", label)
	}
	Run(t, append(args, b.Image)...)
	b.Loop = strings.TrimSpace(Run(t, "losetup", "--find", "--show", b.Image))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", b.Loop).Run() })
	if err := os.MkdirAll(b.Mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	Run(t, "mount", "-t", "btrfs", "-o", "subvolid=5", b.Loop, b.Mnt)
	t.Cleanup(func() { Unmount(t, b.Mnt) })
	return b
}

// Unmount unmounts mnt, retrying lazily if it is busy, and reports but does
// not fail on error: it runs in cleanup, where the first error matters more.
func Unmount(t testing.TB, mnt string) {
	t.Helper()
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		if out2, err2 := exec.Command("umount", "-l", mnt).CombinedOutput(); err2 != nil {
			t.Logf("cleanup: umount %s: %v %s; lazy: %v %s", mnt, err, out, err2, out2)
		}
	}
}

// Subvolume creates a plain subvolume at path with `btrfs subvolume create`.
func Subvolume(t testing.TB, path string) {
	t.Helper()
	Run(t, "btrfs", "subvolume", "create", path)
}

// AssertNoTopLevelMount checks that no private top-level mount
// (internal/toplevel's dockroot-top.*) or its mount point is left in this
// mount namespace.
func AssertNoTopLevelMount(t testing.TB) {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), "dockroot-top.") {
		t.Errorf("a top-level mount is visible outside the private namespace:\n%s", mi)
	}
	if left, _ := filepath.Glob("/run/dockroot-top.*"); len(left) > 0 {
		t.Errorf("mount points left behind: %v", left)
	}
}
