package commands

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// itoolsInitrds builds two initrds for kernel k with update-initramfs in
// an overlay of the cached Debian root with initramfs-tools
// (vmkit.ItoolsRoot): one as Debian makes it, then one with dockroot's
// hook, script and binary installed where `make install` puts them.
func itoolsInitrds(t *testing.T, k *vmkit.Kernel) (plain, hooked string) {
	t.Helper()
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	root, err := vmkit.ItoolsRoot(cache, "bookworm", k)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Debian root with initramfs-tools %s ready in %v", root, time.Since(start).Round(time.Second))
	repo, err := vmkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	init := filepath.Join(out, "dockroot-init")
	if err := vmkit.GoBuild(init, "./cmd/dockroot-init"); err != nil {
		t.Fatal(err)
	}
	var files []vmkit.File
	for src, dst := range map[string]string{
		init: "usr/lib/dockroot/dockroot-init",
		filepath.Join(repo, "hook/initramfs-tools/hooks/dockroot"):                  "usr/share/initramfs-tools/hooks/dockroot",
		filepath.Join(repo, "hook/initramfs-tools/scripts/local-premount/dockroot"): "usr/share/initramfs-tools/scripts/local-premount/dockroot",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, vmkit.File{Path: dst, Mode: 0o755, Data: string(b)})
	}
	plain, hooked = filepath.Join(out, "plain.img"), filepath.Join(out, "hooked.img")
	initrd := "boot/initrd.img-" + k.Version
	// Neither initrd boots: MODULES=list (with no modules listed) leaves
	// out the kernel's modules that initramfs-tools' default (most) would
	// copy and compress, the bulk of each run's time.
	listOnly := []vmkit.File{{Path: "etc/initramfs-tools/conf.d/modules-list", Data: "MODULES=list\n"}}
	err = vmkit.InOverlay(root, listOnly, func(m string) error {
		start := time.Now()
		if err := vmkit.Chroot(m, "update-initramfs", "-c", "-k", k.Version); err != nil {
			return err
		}
		testenv.Run(t, "cp", filepath.Join(m, initrd), plain)
		if err := vmkit.WriteFiles(m, files); err != nil {
			return err
		}
		if err := vmkit.Chroot(m, "update-initramfs", "-u", "-k", k.Version); err != nil {
			return err
		}
		testenv.Run(t, "cp", filepath.Join(m, initrd), hooked)
		t.Logf("two update-initramfs runs in %v", time.Since(start).Round(time.Second))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return plain, hooked
}

// TestInstallImageInitramfsRoot: --initramfs image with a real dockerd
// image whose /boot holds an initrd update-initramfs built with dockroot's
// hook: it is installed beside the image's kernel byte for byte. The
// initrd the same root builds without the hook is refused, naming the file
// and what to do, and nothing is written.
func TestInstallImageInitramfsRoot(t *testing.T) {
	testenv.RequireRoot(t, "dockerd", "docker", "depmod", "chroot")
	s := newKernelStore(t)
	plain, hooked := itoolsInitrds(t, s.Kernel)
	kver := s.Kernel.Version
	for tag, initrd := range map[string]string{"kimg:hooked": hooked, "kimg:plain": plain} {
		ctx := t.TempDir()
		testenv.Run(t, "cp", initrd, filepath.Join(ctx, "initrd.img"))
		dockerfile := "FROM " + kernelRef + "\nCOPY initrd.img /boot/initrd.img-" + kver + "\n"
		if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
		s.D.Docker(t, "build", "--quiet", "--tag", tag, ctx)
	}

	boot := t.TempDir()
	// No dockroot-init is needed on the host for the image's initramfs.
	env := []string{"DOCKROOT_INIT=" + filepath.Join(boot, "no-such-init")}
	code, stdout, stderr := runCLI(env, "install", "kimg:hooked", "--boot-dir", boot, "--docker-root", s.Root, "--initramfs", "image")
	if code != 0 {
		t.Fatalf("install --initramfs image: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("install:\n%s", stdout)
	for _, want := range []string{"the image's own /boot/initrd.img-" + kver, "/usr/lib/dockroot/dockroot-init", "/scripts/local-premount/dockroot"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("install report lacks %q", want)
		}
	}
	dir := filepath.Join(boot, "kimg-hooked")
	want, err := os.ReadFile(hooked)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, bootmenu.InitrdFile)); err != nil || !bytes.Equal(got, want) {
		t.Errorf("installed initramfs (%d bytes, %v) is not the image's initrd (%d bytes)", len(got), err, len(want))
	}
	kernel, err := os.ReadFile(s.Kernel.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, bootmenu.KernelFile)); err != nil || !bytes.Equal(got, kernel) {
		t.Errorf("installed vmlinuz is not the image's kernel (%v)", err)
	}
	// lsinitramfs, initramfs-tools' own reader, sees what install saw.
	if lsinitramfs, err := exec.LookPath("lsinitramfs"); err == nil {
		list := testenv.Run(t, lsinitramfs, filepath.Join(dir, bootmenu.InitrdFile))
		if !strings.Contains(list, "usr/lib/dockroot/dockroot-init\n") || !strings.Contains(list, "scripts/local-premount/dockroot\n") {
			t.Errorf("lsinitramfs of the installed initrd lacks dockroot's files")
		}
	}

	// The initrd Debian built without dockroot's hook: refused, one line,
	// naming the file and both ways out.
	code, _, stderr = runCLI(env, "install", "kimg:plain", "--boot-dir", boot, "--docker-root", s.Root, "--initramfs", "image")
	for _, want := range []string{"/boot/initrd.img-" + kver, "does not hold dockroot's hook", "install dockroot's package in the image", "leave out --initramfs image"} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("install kimg:plain --initramfs image: exit %d, want 1 with %q:\n%s", code, want, stderr)
		}
	}
	if strings.Count(stderr, "\n") != 1 {
		t.Errorf("a runtime error is one line:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(boot, "kimg-plain")); err == nil {
		t.Errorf("a refused install left %s", filepath.Join(boot, "kimg-plain"))
	}
	// An image without any initramfs (kernelRef): says how to build one.
	code, _, stderr = runCLI(env, "install", kernelRef, "--boot-dir", boot, "--docker-root", s.Root, "--initramfs", "image")
	if code != 1 || !strings.Contains(stderr, "the image has no initramfs for kernel "+kver) || !strings.Contains(stderr, "update-initramfs -c -k "+kver) {
		t.Errorf("install %s --initramfs image: exit %d\n%s", kernelRef, code, stderr)
	}
}
