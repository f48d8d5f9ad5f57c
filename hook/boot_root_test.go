package hook

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestBootRealBtrfs runs the real sequence (NewEnv: real mounts, the real
// image store, snapshots, top layer and boot.json) against a loop btrfs
// holding an image a private dockerd imported. Only what would take over
// the test machine is replaced: the pseudo filesystems, the device wait
// (the loop device is given) and switch_root itself.
func TestBootRealBtrfs(t *testing.T) {
	testenv.RequireRoot(t, "dockerd", "docker", "tar")
	fs := testenv.NewBtrfs(t, 1024, "dockroot-hook")
	d := testenv.StartDockerd(t, filepath.Join(fs.Mnt, "var/lib/docker"))

	rootfs := t.TempDir()
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs /bin/busybox (busybox-static): %v", err)
	}
	tree(t, rootfs, "bin/", "sbin/", "etc/", "proc/", "sys/", "dev/", "run/", "tmp/")
	mustDo(t, os.WriteFile(filepath.Join(rootfs, "bin/busybox"), busybox, 0o755))
	mustDo(t, os.Symlink("../bin/busybox", filepath.Join(rootfs, "sbin/init")))
	mustDo(t, os.WriteFile(filepath.Join(rootfs, "etc/hostname"), []byte("image\n"), 0o644))
	tarball, err := exec.Command("tar", "-C", rootfs, "-c", ".").Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	if _, err := d.Run(bytes.NewReader(tarball), "import", "-", "hooktest:1"); err != nil {
		t.Fatal(err)
	}
	// The boot reads the store offline, as PID 1 does.
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	tree(t, fs.Mnt, "machine/etc/")
	mustDo(t, os.WriteFile(filepath.Join(fs.Mnt, "machine/etc/hostname"), []byte("machine\n"), 0o644))

	cmdline := "root=" + fs.Loop + " rootflags=subvol=@/rw rw docker_image=hooktest:1 toplayer_path=machine dockroot.keep=1"
	boot := func(n int) (*memLog, string) {
		log := &memLog{}
		dir := t.TempDir()
		env := NewEnv(log, "test")
		env.RunDir = filepath.Join(dir, "run/dockroot")
		env.TopDir = filepath.Join(dir, "run/dockroot/top")
		env.ToplayerDir = filepath.Join(dir, "run/dockroot/toplayer")
		env.NewRoot = filepath.Join(dir, "newroot")
		env.ModulesList = filepath.Join(dir, "modules.list") // absent: skipped
		env.MountPseudo = func() ([]string, error) { return nil, nil }
		env.ReadCmdline = func() (string, error) { return cmdline, nil }
		env.LoadConfig = func(c string) (*config.Config, error) { return config.Load(c, nil) }
		env.WaitDevice = func(config.DeviceSpec, string, *config.Config) (Device, error) {
			return Device{Path: fs.Loop, FSType: "btrfs"}, nil
		}
		switched := false
		env.SwitchRoot = func(newRoot, init string, args []string) error {
			switched = true
			if _, err := ResolveInit(newRoot, init); err != nil {
				t.Errorf("boot %d: %v", n, err)
			}
			if isMountPoint(env.TopDir) {
				t.Errorf("boot %d: the top level is still mounted at switch_root", n)
			}
			return nil
		}
		t.Cleanup(func() {
			unix.Unmount(env.NewRoot, unix.MNT_DETACH)
			unix.Unmount(env.TopDir, unix.MNT_DETACH)
		})
		if err := Boot(env); err != nil {
			t.Fatalf("boot %d: %v\n%s", n, err, log)
		}
		if !switched {
			t.Fatalf("boot %d: never reached switch_root\n%s", n, log)
		}
		got, err := os.ReadFile(filepath.Join(env.NewRoot, "etc/hostname"))
		if err != nil || string(got) != "machine\n" {
			t.Errorf("boot %d: /etc/hostname = %q, %v; want the top layer's", n, got, err)
		}
		return log, env.NewRoot + "|" + env.RunDir
	}

	_, paths := boot(1)
	newRoot, runDir := strings.Split(paths, "|")[0], strings.Split(paths, "|")[1]
	mustDo(t, os.WriteFile(filepath.Join(newRoot, "written-by-boot-1"), []byte("x"), 0o644))
	var rec Record
	data, err := os.ReadFile(filepath.Join(runDir, "boot.json"))
	mustDo(t, err)
	mustDo(t, json.Unmarshal(data, &rec))
	if rec.Ref != "docker.io/library/hooktest:1" || !strings.HasPrefix(rec.ImageID, "sha256:") ||
		!strings.HasPrefix(rec.ImageSubvolume, "var/lib/docker/btrfs/subvolumes/") ||
		rec.Layer.Subvolume != "@/rw" || rec.Layer.SubvolID < 256 || rec.Toplayer == nil || rec.Toplayer.Summary.Files != 1 {
		t.Errorf("boot.json:\n%s", data)
	}
	mustDo(t, unix.Unmount(newRoot, 0))

	log2, paths2 := boot(2)
	newRoot2 := strings.Split(paths2, "|")[0]
	if _, err := os.Stat(filepath.Join(newRoot2, "written-by-boot-1")); err == nil {
		t.Error("boot 2 sees boot 1's file: the layer is not fresh")
	}
	if _, err := os.Stat(filepath.Join(fs.Mnt, "@/rw.prev.1/written-by-boot-1")); err != nil {
		t.Errorf("boot 1's layer was not kept as @/rw.prev.1: %v\n%s", err, log2)
	}
}
