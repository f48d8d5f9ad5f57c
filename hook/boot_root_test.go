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
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/machineid"
	"github.com/dockroot/dockroot/internal/resume"
	"github.com/dockroot/dockroot/internal/testenv"
	"golang.org/x/sys/unix"
)

// realBoot boots the real sequence (NewEnv: real mounts, the real image
// store, snapshots, top layer and boot.json) against a loop btrfs holding
// an image a private dockerd imported, with the top layer machine/ on it.
// Only what would take over the test machine is replaced: the pseudo
// filesystems, the device wait (the loop device is given) and switch_root
// itself.
type realBoot struct {
	t            *testing.T
	fs           *testenv.Btrfs
	cmdline      string
	wantHostname string
	// machine, when set, is the identity the boot reads instead of this
	// machine's own.
	machine *machineid.Sources
}

func newRealBoot(t *testing.T) *realBoot {
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
	return &realBoot{t: t, fs: fs, wantHostname: "machine\n",
		cmdline: "root=" + fs.Loop + " rootflags=subvol=@/rw rw docker_image=hooktest:1 toplayer_path=machine dockroot.keep=1"}
}

// boot runs boot n with r.cmdline, checks that it reached switch_root
// with the top layer's hostname, and returns its log and the new root and
// run directory, joined by "|".
func (r *realBoot) boot(n int) (*memLog, string) {
	t, fs := r.t, r.fs
	log := &memLog{}
	dir := t.TempDir()
	env := NewEnv(log, "test")
	env.RunDir = filepath.Join(dir, "run/dockroot")
	env.TopDir = filepath.Join(dir, "run/dockroot/top")
	env.ToplayerDir = filepath.Join(dir, "run/dockroot/toplayer")
	env.NewRoot = filepath.Join(dir, "newroot")
	env.ModulesList = filepath.Join(dir, "modules.list") // absent: skipped
	env.Devices = loopDevice{Device{Path: fs.Loop, FSType: "btrfs"}}
	if r.machine != nil {
		env.Machine = r.machine
	}
	// The real guard, but never the host's /sys/power/resume: writing
	// it would ask this machine's kernel to resume.
	prober := resume.NewProber(t.Logf)
	prober.SysPowerResume = filepath.Join(dir, "sys-power-resume")
	prober.SysPowerResumeOffset = filepath.Join(dir, "sys-power-resume-offset")
	env.Hibernation = prober
	switched := false
	env.System = inProcess{System: env.System, cmdline: r.cmdline, switchRoot: func(newRoot, init string, args []string) error {
		switched = true
		if _, err := ResolveInit(newRoot, init); err != nil {
			t.Errorf("boot %d: %v", n, err)
		}
		if isMountPoint(env.TopDir) {
			t.Errorf("boot %d: the top level is still mounted at switch_root", n)
		}
		return nil
	}}
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
	if err != nil || string(got) != r.wantHostname {
		t.Errorf("boot %d: /etc/hostname = %q, %v; want %q", n, got, err, r.wantHostname)
	}
	return log, env.NewRoot + "|" + env.RunDir
}

// record reads the boot.json of the boot whose paths boot returned.
func (r *realBoot) record(paths string) bootrecord.Record {
	r.t.Helper()
	var rec bootrecord.Record
	data, err := os.ReadFile(filepath.Join(strings.Split(paths, "|")[1], "boot.json"))
	mustDo(r.t, err)
	mustDo(r.t, json.Unmarshal(data, &rec))
	return rec
}

// TestBootRealBtrfs runs the real sequence (see realBoot) across boots:
// fresh layers, dockroot.layer=previous, the hibernation guard and boot
// counting.
func TestBootRealBtrfs(t *testing.T) {
	r := newRealBoot(t)
	fs, boot := r.fs, r.boot
	cmdline := r.cmdline
	_, paths := boot(1)
	newRoot, runDir := strings.Split(paths, "|")[0], strings.Split(paths, "|")[1]
	mustDo(t, os.WriteFile(filepath.Join(newRoot, "written-by-boot-1"), []byte("x"), 0o644))
	var rec bootrecord.Record
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
	readRecord := r.record
	if bc := readRecord(paths2).BootCount; bc == nil || bc.Attempt != 2 || bc.Tries != bootstate.DefaultTries || bc.FellBack {
		t.Errorf("boot 2: boot_count = %+v, want attempt 2 of %d", bc, bootstate.DefaultTries)
	}
	mustDo(t, os.WriteFile(filepath.Join(newRoot2, "written-by-boot-2"), []byte("x"), 0o644))
	mustDo(t, unix.Unmount(newRoot2, 0))
	base := cmdline

	// Boot 3: dockroot.layer=previous mounts boot 1's layer as it was
	// left, and changes no subvolume.
	before := testenv.Run(t, "btrfs", "subvolume", "list", fs.Mnt)
	r.cmdline = base + " dockroot.layer=previous"
	r.wantHostname = "machine\n" // boot 1's copy of the top layer
	log3, paths3 := boot(3)
	newRoot3 := strings.Split(paths3, "|")[0]
	if _, err := os.Stat(filepath.Join(newRoot3, "written-by-boot-1")); err != nil {
		t.Errorf("boot 3 with dockroot.layer=previous does not see boot 1's file: %v\n%s", err, log3)
	}
	if after := testenv.Run(t, "btrfs", "subvolume", "list", fs.Mnt); after != before {
		t.Errorf("boot 3 changed the subvolumes:\n%s\n%s", before, after)
	}
	if r := readRecord(paths3); r.LayerMode != "previous" || r.Layer.Subvolume != "@/rw.prev.1" || r.Layer.Image != rec.ImageID || r.BootCount != nil {
		t.Errorf("boot 3: layer %q %+v, boot count %+v", r.LayerMode, r.Layer, r.BootCount)
	}
	mustDo(t, unix.Unmount(newRoot3, 0))

	// Boot 4: resume= names a swap area holding a hibernation image. The
	// layer boot 2 used boots as it is, nothing rotated.
	swap := filepath.Join(t.TempDir(), "swap.img")
	mustDo(t, os.WriteFile(swap, make([]byte, 10<<20), 0o600))
	testenv.Run(t, "mkswap", "-p", "4096", swap)
	sf, err := os.OpenFile(swap, os.O_WRONLY, 0)
	mustDo(t, err)
	_, err = sf.WriteAt([]byte("S1SUSPEND\x00"), 4096-10)
	mustDo(t, err)
	mustDo(t, sf.Close())
	loop := strings.TrimSpace(testenv.Run(t, "losetup", "--find", "--show", swap))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	r.cmdline = base + " resume=" + loop
	log4, paths4 := boot(4)
	newRoot4 := strings.Split(paths4, "|")[0]
	if _, err := os.Stat(filepath.Join(newRoot4, "written-by-boot-2")); err != nil {
		t.Errorf("boot 4 with a hibernation image did not keep boot 2's layer: %v\n%s", err, log4)
	}
	if after := testenv.Run(t, "btrfs", "subvolume", "list", fs.Mnt); after != before {
		t.Errorf("boot 4 changed the subvolumes:\n%s\n%s", before, after)
	}
	if r := readRecord(paths4); r.LayerMode != "current" || r.Hibernation == nil || r.Hibernation.Device != loop ||
		!strings.Contains(r.Hibernation.Reason, "S1SUSPEND") || r.Layer.Fresh || r.BootCount != nil {
		t.Errorf("boot 4: layer %q %+v, hibernation %+v", r.LayerMode, r.Layer, r.Hibernation)
	}
	mustDo(t, unix.Unmount(newRoot4, 0))

	// Boot 5 after `dockroot mark-good`: the image boots uncounted.
	r.cmdline = base
	if _, err := bootstate.MarkGood(fs.Mnt, bootstate.Image{ID: rec.ImageID, Ref: rec.Ref}); err != nil {
		t.Fatal(err)
	}
	_, paths5 := boot(5)
	if bc := readRecord(paths5).BootCount; bc == nil || bc.Attempt != 0 || !strings.Contains(bc.Message, "marked good") || bc.LastGood == nil {
		t.Errorf("boot 5 after mark-good: boot_count = %+v", bc)
	}
}

// inProcess is the real System minus what would take over the test
// machine: the pseudo filesystems are left alone, the command line and
// the configuration come from the test, and switch_root is a check.
type inProcess struct {
	System
	cmdline    string
	switchRoot func(newRoot, init string, args []string) error
}

func (inProcess) MountPseudo() ([]string, error)              { return nil, nil }
func (s inProcess) ReadCmdline() (string, error)              { return s.cmdline, nil }
func (inProcess) LoadConfig(c string) (*config.Config, error) { return config.Load(c, nil) }
func (s inProcess) SwitchRoot(newRoot, init string, args []string) error {
	return s.switchRoot(newRoot, init, args)
}

// loopDevice is Devices that finds the one device at once.
type loopDevice struct{ d Device }

func (l loopDevice) Wait(config.DeviceSpec, string, *config.Config) (Device, error) { return l.d, nil }
