package commands

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/initramfs"
	"github.com/dockroot/dockroot/internal/install"
	"github.com/dockroot/dockroot/internal/layout"
)

func TestInstallAndDoctorUsage(t *testing.T) {
	boot := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{[]string{"install"}, 2, "no image given"},
		{[]string{"install", "desk:1"}, 2, "--boot-dir DIR is required"},
		{[]string{"install", "desk:1", "desk:2", "--boot-dir", boot}, 2, `unexpected argument "desk:2"`},
		{[]string{"install", "desk:1", "--boot-dir", filepath.Join(boot, "nope"), "--init", "/bin/true"}, 1, "create it first"},
		{[]string{"install", "desk:1", "--boot-dir", boot, "--init", "/bin/true", "--docker-root", filepath.Join(boot, "nodocker")}, 1, "nodocker"},
		{[]string{"install", "desk:1", "--boot-dir", boot, "--initramfs", "distro"}, 2, `--initramfs "distro": want dockroot or image`},
		{[]string{"doctor", "desk:1"}, 2, "use --image REF"},
		{[]string{"doctor", "--docker-root", filepath.Join(boot, "nodocker"), "--storage-conf", "-"}, 1, "1 of 1 checks failed"},
	} {
		code, stdout, stderr := runCLI(nil, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d with %q (stdout %q)", c.args, code, stderr, c.code, c.want, stdout)
		}
		if code == 1 && (strings.Contains(stderr, "Usage:") || strings.Count(stderr, "\n") != 1) {
			t.Errorf("%v: a runtime error must print one line and no usage:\n%s", c.args, stderr)
		}
	}
	for _, verb := range []string{"install", "doctor"} {
		code, out, _ := runCLI(nil, verb, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "dockroot "+verb+" ") || !strings.Contains(out, "Exit codes:") {
			t.Errorf("%s --help: exit %d\n%s", verb, code, out)
		}
	}
	// install's boot directory is left as it was after a failure.
	if ents, err := os.ReadDir(boot); err != nil || len(ents) != 0 {
		t.Errorf("boot directory after failed installs: %v %v; want it untouched", ents, err)
	}
}

// install --store podman with a graph root that holds no store names the
// flag to fix.
func TestInstallPodmanRootAdvice(t *testing.T) {
	code, _, stderr := runCLI(nil, "install", "desk:1", "--boot-dir", t.TempDir(), "--init", "/bin/true",
		"--store", "podman", "--podman-root", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "pass --podman-root with Podman's graph root") || strings.Count(stderr, "install") != 1 {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(nil, "install", "desk:1", "--boot-dir", t.TempDir(), "--init", "/bin/true", "--store", "lvm")
	if code != 2 || !strings.Contains(stderr, `--store "lvm": want auto, graphdriver, containerd or podman`) {
		t.Errorf("--store lvm: exit %d, stderr %q", code, stderr)
	}
}

// install --json's object says where the initramfs came from and which
// store the image was in.
func TestInstallJSON(t *testing.T) {
	base := install.Result{Ref: "desk:1", ImageID: "sha256:ab", Store: layout.StoreContainerd, KernelVersion: "6.1.0-57-amd64",
		Dir: "/boot/d/desk-1", Kernel: "/boot/d/desk-1/vmlinuz", Initrd: "/boot/d/desk-1/initramfs.img", Entry: "/boot/d/desk-1/entry.json"}
	built := base
	built.Initramfs = &initramfs.Result{Size: 5 << 20, Modules: make([]initramfs.Module, 3)}
	own := base
	own.ImageInitrd = &install.ImageInitrd{Path: "/boot/initrd.img-6.1.0-57-amd64", Size: 30 << 20, Hook: []string{"dockroot-init"}}
	for _, c := range []struct {
		name string
		res  install.Result
		want installResult
	}{
		{"dockroot's", built, installResult{Initramfs: install.InitramfsDockroot, InitrdSize: 5 << 20, Modules: 3}},
		{"the image's", own, installResult{Initramfs: install.InitramfsImage, InitrdSize: 30 << 20,
			ImageInitrd: "/boot/initrd.img-6.1.0-57-amd64", ImageInitHook: []string{"dockroot-init"}}},
	} {
		got := installJSON(&c.res)
		if got.Store != layout.StoreContainerd || got.Ref != "desk:1" || got.Dir != base.Dir || got.Initramfs != c.want.Initramfs ||
			got.InitrdSize != c.want.InitrdSize || got.Modules != c.want.Modules || got.ImageInitrd != c.want.ImageInitrd ||
			strings.Join(got.ImageInitHook, ",") != strings.Join(c.want.ImageInitHook, ",") {
			t.Errorf("%s: installJSON = %+v", c.name, got)
		}
	}
}
