package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/install"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// kernelStore is a private btrfs dockerd holding the fixture images and
// KernelRef: the busybox fixture base plus the files of Debian's kernel
// package, laid out as apt-get install leaves them (depmod run, /lib a
// link to usr/lib as on merged-/usr Debian).
type kernelStore struct {
	Root     string // the data root, an absolute host path
	D        *testenv.Dockerd
	Fixtures testenv.Fixtures
	Kernel   *vmkit.Kernel
	ImageID  string
}

const kernelRef = "kdesk:1"

func newKernelStore(t *testing.T) *kernelStore {
	t.Helper()
	testenv.RequireRoot(t, "dockerd", "docker", "depmod")
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	k, err := vmkit.FetchKernel(cache)
	if err != nil {
		t.Skipf("root tier: Debian's kernel package is not available: %v", err)
	}
	b := testenv.NewBtrfs(t, 3072, "linux")
	s := &kernelStore{Root: filepath.Join(b.Mnt, "var/lib/docker"), Kernel: k}
	s.D = testenv.StartDockerd(t, s.Root)
	s.Fixtures = s.D.BuildFixtures(t)

	ctx := t.TempDir()
	for _, dir := range []string{"boot", "lib"} {
		// Hard links when the cache is on the same filesystem: the
		// modules are 400 MB.
		if out, err := exec.Command("cp", "-al", filepath.Join(k.Root, dir), ctx).CombinedOutput(); err != nil {
			if out2, err2 := exec.Command("cp", "-a", filepath.Join(k.Root, dir), ctx).CombinedOutput(); err2 != nil {
				t.Fatalf("copy the kernel into the build context: %v %s; %v %s", err, out, err2, out2)
			}
		}
	}
	// The .deb has no modules.dep: its postinst runs depmod.
	testenv.Run(t, "depmod", "-b", ctx, k.Version)
	dockerfile := strings.Join([]string{
		"FROM " + s.Fixtures.Base,
		"COPY boot /boot",
		"COPY lib/modules /usr/lib/modules",
		"RUN ln -s usr/lib /lib && ln -s /boot/vmlinuz-" + k.Version + " /vmlinuz && echo " + kernelRef + " > /etc/fixture-image",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	s.D.Docker(t, "build", "--quiet", "--tag", kernelRef, ctx)
	s.ImageID = s.D.Docker(t, "image", "inspect", "--format", "{{.Id}}", kernelRef)
	return s
}

// initramfsFiles reads a gzip-compressed newc initramfs: path -> content.
func initramfsFiles(t *testing.T, file string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, r := range initramfsRecords(t, file) {
		var data []byte
		if r.ReaderAt != nil {
			var err error
			data, err = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			if err != nil {
				t.Fatal(err)
			}
		}
		out[r.Name] = data
	}
	return out
}

func TestInstallRoot(t *testing.T) {
	s := newKernelStore(t)
	boot := t.TempDir()
	env := []string{"DOCKROOT_INIT=" + standIn(t)}
	kver := s.Kernel.Version

	code, stdout, stderr := runCLI(env, "install", kernelRef, "--boot-dir", boot, "--docker-root", s.Root)
	if code != 0 {
		t.Fatalf("install %s: exit %d\n%s%s", kernelRef, code, stdout, stderr)
	}
	t.Logf("install:\n%s", stdout)
	dir := filepath.Join(boot, "kdesk-1")
	for _, want := range []string{"installed " + kernelRef, dir, "kernel " + kver + " from /boot/vmlinuz-" + kver, "/lib/modules/" + kver} {
		if !strings.Contains(stdout, want) {
			t.Errorf("install report lacks %q", want)
		}
	}

	// The kernel is the image's, byte for byte.
	want, err := os.ReadFile(s.Kernel.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, bootmenu.KernelFile)); err != nil || !bytes.Equal(got, want) {
		t.Errorf("installed vmlinuz (%d bytes, %v) is not the image's kernel (%d bytes)", len(got), err, len(want))
	}

	// The initramfs modules are the image's lib/modules/KVER files.
	img := s.imageRoot(t)
	files := initramfsFiles(t, filepath.Join(dir, bootmenu.InitrdFile))
	modPrefix := "lib/modules/" + kver + "/"
	nmods := 0
	for name, data := range files {
		if !strings.HasPrefix(name, modPrefix) || !strings.HasSuffix(name, ".ko") {
			continue
		}
		nmods++
		src, err := os.ReadFile(filepath.Join(img, "usr", name))
		if err != nil || !bytes.Equal(src, data) {
			t.Errorf("initramfs %s differs from the image's /usr/%s (%v)", name, name, err)
		}
	}
	if nmods == 0 || files[modPrefix+"kernel/fs/btrfs/btrfs.ko"] == nil {
		t.Errorf("initramfs has %d modules of %s and no btrfs.ko; files: %d", nmods, kver, len(files))
	}
	if list := string(files["etc/dockroot/modules.list"]); !strings.Contains(list, "# kernel: "+kver) {
		t.Errorf("modules.list is not for %s:\n%s", kver, list)
	}

	// The record `dockroot menu` reads.
	inst, err := bootmenu.ReadInstalled(boot)
	if err != nil {
		t.Fatal(err)
	}
	if len(inst) != 1 || inst[0].Ref != kernelRef || inst[0].ImageID != s.ImageID || inst[0].KernelVersion != kver {
		t.Errorf("ReadInstalled = %+v; want %s, image %s, kernel %s", inst, kernelRef, s.ImageID, kver)
	}

	// Again: nothing to do, nothing rewritten.
	before := statAll(t, dir)
	code, stdout, stderr = runCLI(env, "install", kernelRef, "--boot-dir", boot, "--docker-root", s.Root)
	if code != 0 || !strings.Contains(stdout, "up to date") {
		t.Fatalf("second install: exit %d\n%s%s", code, stdout, stderr)
	}
	if after := statAll(t, dir); after != before {
		t.Errorf("second install rewrote files:\nbefore %s\nafter  %s", before, after)
	}
	// --json says the same, with the store.
	code, stdout, stderr = runCLI(env, "install", kernelRef, "--boot-dir", boot, "--docker-root", s.Root, "--json")
	var res installResult
	if err := json.Unmarshal([]byte(stdout), &res); code != 0 || err != nil || !res.UpToDate || res.Store != layout.StoreGraphDriver ||
		res.ImageID != s.ImageID || res.KernelVersion != kver || res.Initramfs != install.InitramfsDockroot || res.Dir != dir {
		t.Errorf("install --json: exit %d, %v: %+v\n%s%s", code, err, res, stdout, stderr)
	}

	// An image without a kernel: the error says how to add one.
	code, _, stderr = runCLI(env, "install", s.Fixtures.Desk1, "--boot-dir", boot, "--docker-root", s.Root)
	if code != 1 || !strings.Contains(stderr, "apt-get install -y linux-image-amd64") {
		t.Errorf("install %s (no kernel): exit %d\n%s", s.Fixtures.Desk1, code, stderr)
	}
	// An unknown tag: the error lists the tags there are.
	code, _, stderr = runCLI(env, "install", "nosuch:1", "--boot-dir", boot, "--docker-root", s.Root)
	if code != 1 || !strings.Contains(stderr, kernelRef) {
		t.Errorf("install nosuch:1: exit %d\n%s", code, stderr)
	}
}

// imageRoot is the host path of KernelRef's root filesystem subvolume.
func (s *kernelStore) imageRoot(t *testing.T) string {
	t.Helper()
	img, err := graphdriver.New("/", strings.TrimPrefix(s.Root, "/")).Resolve(kernelRef)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join("/", img.Subvolume)
}

// statAll fingerprints every file in dir by inode and change time.
func statAll(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s:%d:%d ", filepath.Base(p), st.Ino, st.Ctim.Nano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestInstallPodmanRoot: install finds a Podman image; the fixture has no
// kernel, so it stops there, having resolved the image.
func TestInstallPodmanRoot(t *testing.T) {
	s := newPodmanStore(t)
	boot := t.TempDir()
	env := []string{"DOCKROOT_INIT=" + standIn(t)}
	code, stdout, stderr := runCLI(env, "install", s.Fixtures.Desk1, "--boot-dir", boot, "--docker-root", s.DockerRoot, "--podman-root", s.Root)
	if code != 1 || !strings.Contains(stderr, "no boot/vmlinuz-*") || !strings.Contains(stderr, s.Root) {
		t.Errorf("install %s from Podman: exit %d, want 1 with the image's missing kernel\n%s%s", s.Fixtures.Desk1, code, stdout, stderr)
	}
	code, _, stderr = runCLI(env, "install", "nothere:1", "--boot-dir", boot, "--docker-root", s.DockerRoot, "--podman-root", s.Root)
	if code != 1 || !strings.Contains(stderr, "localhost/desk:1") {
		t.Errorf("install nothere:1: exit %d, want 1 listing Podman's tags: %s", code, stderr)
	}
}
