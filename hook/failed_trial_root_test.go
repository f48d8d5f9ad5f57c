package hook

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/testenv"
	"golang.org/x/sys/unix"
)

// newRealBootTwoImages is newRealBoot with two images, trial:a and
// trial:b, that differ in /etc/image.
func newRealBootTwoImages(t *testing.T) *realBoot {
	testenv.RequireRoot(t, "dockerd", "docker", "tar")
	fs := testenv.NewBtrfs(t, 1024, "dockroot-trial")
	d := testenv.StartDockerd(t, filepath.Join(fs.Mnt, "var/lib/docker"))
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs /bin/busybox (busybox-static): %v", err)
	}
	for _, name := range []string{"a", "b"} {
		rootfs := t.TempDir()
		tree(t, rootfs, "bin/", "sbin/", "etc/", "proc/", "sys/", "dev/", "run/", "tmp/")
		mustDo(t, os.WriteFile(filepath.Join(rootfs, "bin/busybox"), busybox, 0o755))
		mustDo(t, os.Symlink("../bin/busybox", filepath.Join(rootfs, "sbin/init")))
		mustDo(t, os.WriteFile(filepath.Join(rootfs, "etc/image"), []byte(name+"\n"), 0o644))
		tarball, err := exec.Command("tar", "-C", rootfs, "-c", ".").Output()
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		if _, err := d.Run(bytes.NewReader(tarball), "import", "-", "trial:"+name); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	tree(t, fs.Mnt, "machine/etc/")
	mustDo(t, os.WriteFile(filepath.Join(fs.Mnt, "machine/etc/hostname"), []byte("machine\n"), 0o644))
	return &realBoot{t: t, fs: fs, wantHostname: "machine\n",
		cmdline: "root=" + fs.Loop + " rootflags=subvol=@/rw rw toplayer_path=machine dockroot.keep=1 dockroot.tries=9"}
}

// TestBootFailedTrialKeepsLastGoodLayer (issue 17 item 10), through the
// real boot: A booted and marked good, then two boots of B that never are.
// The second rotates B#1's layer to @/rw.failed, not @/rw.prev.1, so
// dockroot.layer=previous (the menu's "previous layer" entry) still boots
// the layer of A's good boot, with what that boot wrote.
func TestBootFailedTrialKeepsLastGoodLayer(t *testing.T) {
	r := newRealBootTwoImages(t)
	base := r.cmdline
	run := func(n int, params, written string) string {
		t.Helper()
		r.cmdline = base + " " + params
		_, paths := r.boot(n)
		newRoot := strings.Split(paths, "|")[0]
		if written != "" {
			mustDo(t, os.WriteFile(filepath.Join(newRoot, written), []byte("x"), 0o644))
		}
		mustDo(t, unix.Unmount(newRoot, 0))
		return paths
	}
	has := func(layer, file string) bool {
		_, err := os.Stat(filepath.Join(r.fs.Mnt, layer, file))
		return err == nil
	}

	recA := r.record(run(1, "docker_image=trial:a", "written-by-A"))
	if _, err := bootstate.MarkGood(r.fs.Mnt, bootstate.Image{ID: recA.ImageID, Ref: recA.Ref}); err != nil {
		t.Fatal(err)
	}
	run(2, "docker_image=trial:b", "written-by-B1")
	if !has("@/rw.prev.1", "written-by-A") {
		t.Fatal("B#1 did not rotate A's good layer to @/rw.prev.1")
	}
	recB2 := r.record(run(3, "docker_image=trial:b", "written-by-B2"))
	if bc := recB2.BootCount; bc == nil || bc.Attempt != 2 || bc.LastGood == nil || bc.LastGood.ID != recA.ImageID {
		t.Fatalf("B#2: boot count %+v", bc)
	}
	if !has("@/rw.prev.1", "written-by-A") || !has("@/rw.failed", "written-by-B1") || !has("@/rw", "written-by-B2") {
		t.Errorf("after B#2: @/rw.prev.1 must be A's layer, @/rw.failed B#1's, @/rw B#2's:\n%s",
			testenv.Run(t, "btrfs", "subvolume", "list", r.fs.Mnt))
	}

	before := testenv.Run(t, "btrfs", "subvolume", "list", r.fs.Mnt)
	_, paths := func() (*memLog, string) {
		r.cmdline = base + " docker_image=trial:b dockroot.layer=previous"
		return r.boot(4)
	}()
	newRoot := strings.Split(paths, "|")[0]
	if _, err := os.Stat(filepath.Join(newRoot, "written-by-A")); err != nil {
		t.Errorf("dockroot.layer=previous does not boot A's good layer: %v", err)
	}
	if rec := r.record(paths); rec.Layer.Subvolume != "@/rw.prev.1" || rec.Layer.Image != recA.ImageID {
		t.Errorf("dockroot.layer=previous booted %s (image %s); want @/rw.prev.1 of image %s", rec.Layer.Subvolume, rec.Layer.Image, recA.ImageID)
	}
	mustDo(t, unix.Unmount(newRoot, 0))
	if after := testenv.Run(t, "btrfs", "subvolume", "list", r.fs.Mnt); after != before {
		t.Errorf("dockroot.layer=previous changed the subvolumes:\n%s\n%s", before, after)
	}
}
