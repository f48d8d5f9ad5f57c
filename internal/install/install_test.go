package install

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/imagekernel"
)

const (
	kver = "6.1.0-1-test"
	id1  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	id2  = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// imageRoot is an image's root filesystem with a kernel whose drivers are
// all built in (no loadable modules), enough for the initramfs builder.
func imageRoot(t *testing.T, kernel string) string {
	t.Helper()
	root := t.TempDir()
	mods := filepath.Join(root, "usr/lib/modules", kver)
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mods, "modules.dep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/lib", filepath.Join(root, "lib")); err != nil {
		t.Fatal(err)
	}
	if kernel != "" {
		if err := os.MkdirAll(filepath.Join(root, "boot"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "boot", "vmlinuz-"+kver), []byte(kernel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// initBinary is a static executable standing in for dockroot-init.
func initBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox (Debian busybox-static) as a stand-in init")
	}
	return p
}

// installFrom runs the steps after the store lookup, as Run does once it
// has found the image's root.
func installFrom(t *testing.T, bootDir, root, ref, id string) (*Result, error) {
	t.Helper()
	in := &installer{ctx: context.Background(), opts: Options{Ref: ref, BootDir: bootDir, DockerRoot: "/unused", InitBinary: initBinary(t),
		Now: func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }}}
	in.root = root
	in.res.Ref, in.res.ImageID = ref, id
	defer in.cleanup()
	if err := in.checkOptions(); err != nil {
		return nil, err
	}
	if err := in.fromRoot(); err != nil {
		return nil, err
	}
	return &in.res, nil
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// staged lists what is left in the staging directory, which should be
// gone after every run.
func staged(t *testing.T, bootDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(bootDir, StagingDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	out := []string{StagingDir}
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestInstallThenUpToDateThenReplace(t *testing.T) {
	boot := t.TempDir()
	root := imageRoot(t, "kernel one")

	res, err := installFrom(t, boot, root, "desk:stable", id1)
	if err != nil {
		t.Fatal(err)
	}
	if res.UpToDate || res.Dir != filepath.Join(boot, "desk-stable") || res.KernelSource != "/boot/vmlinuz-"+kver ||
		res.Initramfs == nil || res.Initramfs.KernelVersion != kver {
		t.Fatalf("first install = %+v", res)
	}
	if data, err := os.ReadFile(res.Kernel); err != nil || string(data) != "kernel one" {
		t.Errorf("installed kernel = %q, %v; want the image's", data, err)
	}
	got, err := bootmenu.ReadInstalled(boot)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Ref != "desk:stable" || got[0].ImageID != id1 || got[0].KernelVersion != kver || got[0].Dir != "desk-stable" {
		t.Fatalf("ReadInstalled = %+v; want desk:stable only (the staging directory is not an entry)", got)
	}
	dirIno, entryIno := inode(t, res.Dir), inode(t, res.Entry)

	// Same image, same files: nothing is rewritten.
	res, err = installFrom(t, boot, root, "desk:stable", id1)
	if err != nil {
		t.Fatal(err)
	}
	if !res.UpToDate || inode(t, res.Dir) != dirIno || inode(t, res.Entry) != entryIno {
		t.Errorf("second install: UpToDate=%v, directory or entry.json replaced; want nothing written", res.UpToDate)
	}
	if s := staged(t, boot); len(s) != 0 {
		t.Errorf("staging directory keeps %v after an up-to-date run", s)
	}

	// The tag moved to a new image with a new kernel: replaced whole.
	root2 := imageRoot(t, "kernel two")
	res, err = installFrom(t, boot, root2, "desk:stable", id2)
	if err != nil {
		t.Fatal(err)
	}
	if res.UpToDate || inode(t, res.Dir) == dirIno {
		t.Errorf("install of a new image: UpToDate=%v, same directory inode; want a replaced directory", res.UpToDate)
	}
	if data, _ := os.ReadFile(res.Kernel); string(data) != "kernel two" {
		t.Errorf("kernel after replace = %q, want the new image's", data)
	}
	if got, _ := bootmenu.ReadInstalled(boot); len(got) != 1 || got[0].ImageID != id2 {
		t.Errorf("ReadInstalled after replace = %+v, want image %s", got, id2)
	}
	if s := staged(t, boot); len(s) != 0 {
		t.Errorf("staging directory keeps %v after a replace", s)
	}
}

func TestInstallRefusesOthersDirectories(t *testing.T) {
	root := imageRoot(t, "k")
	t.Run("another tag with the same slug", func(t *testing.T) {
		boot := t.TempDir()
		if _, err := installFrom(t, boot, root, "desk:A", id1); err != nil {
			t.Fatal(err)
		}
		_, err := installFrom(t, boot, root, "desk:a", id2)
		if err == nil || !strings.Contains(err.Error(), "desk:A") || !strings.Contains(err.Error(), "retag") {
			t.Errorf("install desk:a over desk:A: %v; want a refusal naming desk:A", err)
		}
		if got, _ := bootmenu.ReadInstalled(boot); len(got) != 1 || got[0].Ref != "desk:A" || got[0].ImageID != id1 {
			t.Errorf("after the refusal: %+v; want desk:A untouched", got)
		}
	})
	t.Run("a directory that is not an install", func(t *testing.T) {
		boot := t.TempDir()
		mine := filepath.Join(boot, "desk-1", "notes.txt")
		if err := os.MkdirAll(filepath.Dir(mine), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := installFrom(t, boot, root, "desk:1", id1)
		if err == nil || !strings.Contains(err.Error(), "not a dockroot install") {
			t.Errorf("install over a foreign directory: %v; want a refusal", err)
		}
		if _, err := os.Stat(mine); err != nil {
			t.Errorf("the foreign file is gone: %v", err)
		}
	})
}

func TestInstallRemovesStaleStaging(t *testing.T) {
	boot := t.TempDir()
	stale := filepath.Join(boot, StagingDir, "install-123", "desk-1")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := installFrom(t, boot, imageRoot(t, "k"), "desk:1", id1); err != nil {
		t.Fatal(err)
	}
	if s := staged(t, boot); len(s) != 0 {
		t.Errorf("staging directory keeps %v; want the interrupted run's files removed", s)
	}
}

func TestInstallNoKernel(t *testing.T) {
	boot := t.TempDir()
	_, err := installFrom(t, boot, imageRoot(t, ""), "desk:1", id1)
	if !errors.Is(err, imagekernel.ErrNoKernel) || !strings.Contains(err.Error(), "RUN apt-get install -y linux-image-amd64") {
		t.Errorf("install from an image without a kernel: %v; want ErrNoKernel saying how to add one", err)
	}
	if got, _ := bootmenu.ReadInstalled(boot); len(got) != 0 {
		t.Errorf("an entry was recorded: %+v", got)
	}
}

func TestSameContent(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	big := strings.Repeat("x", 3<<20)
	a, b := write("a", big), write("b", big)
	c := write("c", big[:len(big)-1]+"y")
	d := write("d", big+"z")
	for _, tc := range []struct {
		x, y string
		want bool
	}{{a, b, true}, {a, c, false}, {a, d, false}, {write("e", ""), write("f", ""), true}} {
		if got, err := sameContent(tc.x, tc.y); err != nil || got != tc.want {
			t.Errorf("sameContent(%s, %s) = %v, %v; want %v", filepath.Base(tc.x), filepath.Base(tc.y), got, err, tc.want)
		}
	}
}

func TestInstallLocksBootDir(t *testing.T) {
	boot := t.TempDir()
	fd, err := syscall.Open(boot, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_, err = installFrom(t, boot, imageRoot(t, "k"), "desk:1", id1)
	if err == nil || !strings.Contains(err.Error(), "another dockroot install is writing to "+boot) {
		t.Errorf("install while another holds the lock: %v; want a refusal", err)
	}
	if got, _ := bootmenu.ReadInstalled(boot); len(got) != 0 {
		t.Errorf("an entry was recorded: %+v", got)
	}
}
