package doctor

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/securejoin"
	"golang.org/x/sys/unix"
)

// files makes a directory tree: path -> content; "->target" makes a
// symlink, a trailing slash a directory.
func files(t *testing.T, m map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range m {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(p, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.HasPrefix(c, "->"):
			err = os.Symlink(strings.TrimPrefix(c, "->"), full)
		default:
			err = os.WriteFile(full, []byte(c), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCheckStorageDriver(t *testing.T) {
	for _, c := range []struct {
		name       string
		tree       map[string]string
		daemonJSON string // "" for none
		want       Status
		detail     string // substring of Detail
		fix        string // substring of Fix
	}{
		{"btrfs", map[string]string{"image/btrfs/repositories.json": "{}"}, "", OK, "btrfs graph driver", ""},
		{"btrfs and a leftover overlay2", map[string]string{"image/btrfs/": "", "image/overlay2/": ""}, "", OK, "left over: overlay2", ""},
		{"overlay2", map[string]string{"image/overlay2/repositories.json": "{}"}, "", Fail, "uses the overlay2 storage driver", `{"storage-driver": "btrfs"}`},
		{"vfs", map[string]string{"image/vfs/repositories.json": "{}"}, "", Fail, "vfs copies every layer", `{"storage-driver": "btrfs"}`},
		{"containerd image store", map[string]string{"containerd/daemon/": ""}, "", Fail, "containerd image store", `"containerd-snapshotter": true`},
		{"empty data root", map[string]string{"tmp/": ""}, "", Fail, "has no image store", "--docker-root"},
		{"daemon.json sets overlay2", map[string]string{"image/btrfs/": ""}, `{"storage-driver": "overlay2"}`, Fail, `"storage-driver": "overlay2"`, `{"storage-driver": "btrfs"}`},
		{"daemon.json enables the snapshotter", map[string]string{"image/btrfs/": ""}, `{"storage-driver": "btrfs", "features": {"containerd-snapshotter": true}}`, Fail, "containerd-snapshotter", "restart dockerd"},
		{"daemon.json says btrfs", map[string]string{"image/btrfs/": ""}, `{"storage-driver": "btrfs", "features": {"containerd-snapshotter": false}}`, OK, "btrfs graph driver", ""},
		{"daemon.json broken", map[string]string{"image/btrfs/": ""}, `{"storage-driver": `, Fail, "daemon.json", "JSON syntax"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := files(t, c.tree)
			dj := filepath.Join(t.TempDir(), "daemon.json")
			if c.daemonJSON != "" {
				if err := os.WriteFile(dj, []byte(c.daemonJSON), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got := CheckStorageDriver(root, dj)
			if got.Status != c.want || !strings.Contains(got.Detail, c.detail) || !strings.Contains(got.Fix, c.fix) {
				t.Errorf("CheckStorageDriver = %+v\nwant status %s, detail with %q, fix with %q", got, c.want, c.detail, c.fix)
			}
			if got.Status != OK && got.Fix == "" {
				t.Errorf("a %s check without a fix: %+v", got.Status, got)
			}
		})
	}
}

func TestCheckBtrfsAndFreeSpace(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		name      string
		info      FSInfo
		err       error
		fs, space Status // space "" when the free-space check cannot run
	}{
		{"btrfs, roomy", FSInfo{Type: unix.BTRFS_SUPER_MAGIC, Total: 100 * gib, Avail: 50 * gib}, nil, OK, OK},
		{"btrfs, under 1 GiB", FSInfo{Type: unix.BTRFS_SUPER_MAGIC, Total: 2 * gib, Avail: gib / 2}, nil, OK, Warn},
		{"btrfs, under 10%", FSInfo{Type: unix.BTRFS_SUPER_MAGIC, Total: 100 * gib, Avail: 5 * gib}, nil, OK, Warn},
		{"btrfs, exactly at the limits", FSInfo{Type: unix.BTRFS_SUPER_MAGIC, Total: 10 * gib, Avail: gib}, nil, OK, OK},
		{"ext4", FSInfo{Type: unix.EXT4_SUPER_MAGIC, Total: 100 * gib, Avail: 50 * gib}, nil, Fail, OK},
		{"overlayfs", FSInfo{Type: unix.OVERLAYFS_SUPER_MAGIC, Total: 100 * gib, Avail: 50 * gib}, nil, Fail, OK},
		{"statfs fails", FSInfo{}, errors.New("statfs /x: permission denied"), Fail, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			statfs := func(string) (FSInfo, error) { return c.info, c.err }
			fsc, info := CheckBtrfs("/data", statfs)
			if fsc.Status != c.fs {
				t.Errorf("CheckBtrfs = %+v, want %s", fsc, c.fs)
			}
			if fsc.Status == Fail && fsc.Fix == "" {
				t.Errorf("failure without a fix: %+v", fsc)
			}
			if c.space == "" {
				if info != nil {
					t.Errorf("CheckBtrfs returned statistics %+v after statfs failed", info)
				}
				return
			}
			if sc := CheckFreeSpace("/data", *info); sc.Status != c.space || (sc.Status == Warn) != (sc.Fix != "") {
				t.Errorf("CheckFreeSpace = %+v, want %s (with a fix only when warning)", sc, c.space)
			}
		})
	}
}

func TestParseFstab(t *testing.T) {
	data := "# /etc/fstab: static file system information.\n" +
		"\n" +
		"UUID=abc  /  btrfs  defaults,subvol=@  0  1\n" +
		"  LABEL=data /srv/my\\040data ext4 rw,noatime 0 2\n" +
		"proc /proc\n" +
		"lonely\n" +
		"/dev/sda1\t//\tbtrfs\tsubvolid=256\n"
	got := ParseFstab([]byte(data))
	want := []FstabEntry{
		{Line: 3, Spec: "UUID=abc", File: "/", VFSType: "btrfs", Options: []string{"defaults", "subvol=@"}},
		{Line: 4, Spec: "LABEL=data", File: "/srv/my data", VFSType: "ext4", Options: []string{"rw", "noatime"}},
		{Line: 5, Spec: "proc", File: "/proc"},
		{Line: 7, Spec: "/dev/sda1", File: "/", VFSType: "btrfs", Options: []string{"subvolid=256"}},
	}
	if len(got) != len(want) {
		t.Fatalf("ParseFstab: %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Line != w.Line || g.Spec != w.Spec || g.File != w.File || g.VFSType != w.VFSType || strings.Join(g.Options, ",") != strings.Join(w.Options, ",") {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestRootSubvolProblem(t *testing.T) {
	for _, c := range []struct {
		line, rwlayer string
		problem       string // substring; "" for none
	}{
		{"UUID=abc / btrfs defaults,subvol=@ 0 1", "", "mounts / with subvol=@"},
		{"UUID=abc / btrfs subvol=/@rootfs", "docker_rwlayer", "subvol=/@rootfs"},
		{"LABEL=linux / btrfs rw,subvol=/docker_rwlayer", "docker_rwlayer", ""},
		{"LABEL=linux / btrfs subvol=docker_rwlayer/", "/docker_rwlayer", ""},
		{"LABEL=linux / btrfs subvolid=5", "docker_rwlayer", "new subvolume ID at every boot"},
		{"LABEL=linux / btrfs defaults 0 0", "", ""},
		{"/dev/sda1 / ext4 errors=remount-ro 0 1", "", ""},
		{"LABEL=linux /home btrfs subvol=@home", "", ""},
		{"LABEL=linux /./ btrfs subvol=@", "", "line 1 mounts / with subvol=@"},
	} {
		es := ParseFstab([]byte(c.line + "\n"))
		if len(es) != 1 {
			t.Fatalf("%q: parsed %d entries", c.line, len(es))
		}
		got := RootSubvolProblem(es[0], c.rwlayer)
		if (c.problem == "") != (got == "") || !strings.Contains(got, c.problem) {
			t.Errorf("RootSubvolProblem(%q, rwlayer %q) = %q, want %q", c.line, c.rwlayer, got, c.problem)
		}
	}
}

func TestCheckFstab(t *testing.T) {
	for _, c := range []struct {
		name string
		tree map[string]string
		want Status
	}{
		{"no fstab", map[string]string{"etc/hostname": "x"}, OK},
		{"unconfigured", map[string]string{"etc/fstab": "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"}, OK},
		{"root on another subvolume", map[string]string{"etc/fstab": "UUID=1 / btrfs subvol=@ 0 0\n"}, Fail},
		// An absolute link is followed inside the root, not on the host.
		{"link to the real file", map[string]string{"etc/fstab": "->/etc/fstab.d/real", "etc/fstab.d/real": "UUID=1 / btrfs subvol=@ 0 0\n"}, Fail},
	} {
		got := CheckFstab("img", files(t, c.tree), "docker_rwlayer")
		if got.Status != c.want || (got.Status == Fail && !strings.Contains(got.Detail, "UUID=1 / btrfs subvol=@ 0 0")) {
			t.Errorf("%s: CheckFstab = %+v, want %s (a failure quotes the line)", c.name, got, c.want)
		}
	}
}

// fileInfo is an fs.FileInfo with a chosen owner, as the test cannot chown
// without root.
type fileInfo struct {
	mode     fs.FileMode
	uid, gid uint32
}

func (f fileInfo) Name() string       { return "shadow" }
func (f fileInfo) Size() int64        { return 100 }
func (f fileInfo) Mode() fs.FileMode  { return f.mode }
func (f fileInfo) ModTime() time.Time { return time.Time{} }
func (f fileInfo) IsDir() bool        { return false }
func (f fileInfo) Sys() any           { return &syscall.Stat_t{Uid: f.uid, Gid: f.gid} }

func TestSecretFileStatus(t *testing.T) {
	for _, c := range []struct {
		name string
		fi   fileInfo
		want Status
	}{
		{"debian default root:shadow 0640", fileInfo{mode: 0o640, gid: 42}, OK},
		{"root 0600", fileInfo{mode: 0o600}, OK},
		{"root 0000", fileInfo{mode: 0}, OK},
		{"world-readable", fileInfo{mode: 0o644}, Fail},
		{"world-writable", fileInfo{mode: 0o602}, Fail},
		{"group-writable", fileInfo{mode: 0o660}, Fail},
		{"owned by a user", fileInfo{mode: 0o600, uid: 1000}, Fail},
		{"symlink", fileInfo{mode: fs.ModeSymlink | 0o777}, Warn},
		{"directory", fileInfo{mode: fs.ModeDir | 0o700}, Fail},
	} {
		st, detail, fix := SecretFileStatus("etc/shadow", c.fi)
		if st != c.want || (st != OK) != (fix != "") || detail == "" {
			t.Errorf("%s: SecretFileStatus = %s, %q, %q; want %s, a detail, and a fix unless ok", c.name, st, detail, fix, c.want)
		}
	}
}

func TestCheckShadowOnDisk(t *testing.T) {
	top := files(t, map[string]string{"etc/shadow": "root:*:1::::::\n"})
	if err := os.Chmod(filepath.Join(top, "etc/shadow"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := CheckShadow(top)
	if len(got) != 2 || got[0].Status != Fail || !strings.Contains(got[0].Detail, "0644") || got[1].Status != OK {
		t.Errorf("CheckShadow = %+v; want etc/shadow FAIL (world-readable), etc/gshadow ok (absent)", got)
	}
}

func TestCheckInit(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox (Debian busybox-static)")
	}
	static, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	lsPath, _ := exec.LookPath("ls")
	dynamic, err := os.ReadFile(lsPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		tree   map[string]string
		mode   fs.FileMode // of the file init resolves to
		want   Status
		detail string
	}{
		{"script with its shell", map[string]string{"sbin/init": "#!/bin/sh\necho hi\n", "bin/sh": "->busybox", "bin/busybox": string(static)}, 0o755, OK, "runs with /bin/sh"},
		{"script without its shell", map[string]string{"sbin/init": "#!/bin/bash -e\n"}, 0o755, Fail, "needs /bin/bash"},
		{"static binary behind an absolute link", map[string]string{"sbin/init": "->/lib/systemd/systemd", "lib/systemd/systemd": string(static)}, 0o755, OK, "/sbin/init -> /lib/systemd/systemd"},
		{"dynamic binary without its loader", map[string]string{"sbin/init": string(dynamic)}, 0o755, Fail, "ld-linux"},
		{"not executable", map[string]string{"sbin/init": "#!/bin/sh\n", "bin/sh": "x"}, 0o644, Fail, "not executable"},
		{"missing", map[string]string{"bin/sh": "x"}, 0, Fail, "does not exist"},
		{"a directory", map[string]string{"sbin/init/": ""}, 0o755, Fail, "not a regular file"},
		{"garbage", map[string]string{"sbin/init": "MZ\x90\x00"}, 0o755, Fail, "neither a script"},
	} {
		root := files(t, c.tree)
		if c.mode != 0 {
			// Resolved inside root: one case links init to an absolute path.
			real, err := securejoin.Resolve(root, "sbin/init")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(real, c.mode); err != nil {
				t.Fatal(err)
			}
		}
		got := CheckInit("img", root, "/sbin/init")
		if got.Status != c.want || !strings.Contains(got.Detail, c.detail) || (got.Status == Fail) != (got.Fix != "") {
			t.Errorf("%s: CheckInit = %+v; want %s with %q", c.name, got, c.want, c.detail)
		}
	}
}

// TestCheckInitWalksLikeTheKernel: doctor agrees with the boot's check
// (and execve) on paths the kernel refuses although their cleaned form
// exists (issue 17 item 4).
func TestCheckInitWalksLikeTheKernel(t *testing.T) {
	root := files(t, map[string]string{"sbin/init": "#!/bin/sh\n", "bin/sh": "#!/bin/sh\n", "etc/file": "x"})
	for _, p := range []string{"sbin/init", "bin/sh"} {
		if err := os.Chmod(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got := CheckInit("img", root, "/sbin/init"); got.Status != OK {
		t.Fatalf("CheckInit(/sbin/init) = %+v, want OK", got)
	}
	for _, init := range []string{"/nonexist/../sbin/init", "/etc/file/../../sbin/init", "/sbin/init/."} {
		if got := CheckInit("img", root, init); got.Status != Fail || got.Fix == "" {
			t.Errorf("CheckInit(%s) = %+v, want a failure with a fix", init, got)
		}
	}
}

func TestCheckKernel(t *testing.T) {
	for _, c := range []struct {
		name string
		tree map[string]string
		want Status
		text string
	}{
		{"matching", map[string]string{"boot/vmlinuz-6.1.0-1-amd64": "k", "lib/modules/6.1.0-1-amd64/modules.dep": ""}, OK, "6.1.0-1-amd64"},
		{"no kernel", map[string]string{"etc/hostname": "x"}, Warn, "linux-image-amd64"},
		{"modules of another kernel", map[string]string{"boot/vmlinuz-6.1.0-2-amd64": "k", "lib/modules/6.1.0-1-amd64/modules.dep": ""}, Fail, "has no lib/modules/6.1.0-2-amd64"},
	} {
		got := CheckKernel("img", files(t, c.tree))
		if got.Status != c.want || !strings.Contains(got.Detail+got.Fix, c.text) {
			t.Errorf("%s: CheckKernel = %+v; want %s mentioning %q", c.name, got, c.want, c.text)
		}
	}
}

func TestRunMissingDataRoot(t *testing.T) {
	got := Run(Options{DockerRoot: filepath.Join(t.TempDir(), "nope"), DaemonJSON: "-"})
	if len(got) != 1 || got[0].Status != Fail || !strings.Contains(got[0].Fix, "--docker-root") {
		t.Errorf("Run on a missing data root = %+v; want one failure pointing at --docker-root", got)
	}
}

// A Podman store with the overlay driver (Podman's default) fails the
// Podman storage driver check with the storage.conf change, as Docker's
// overlay2 does with daemon.json's; one with the btrfs driver passes; a
// graph root that does not exist adds no Podman check at all.
func TestPodmanStorageDriver(t *testing.T) {
	btrfsFS := func(string) (FSInfo, error) {
		return FSInfo{Type: unix.BTRFS_SUPER_MAGIC, Total: 100 << 30, Avail: 50 << 30}, nil
	}
	docker := files(t, map[string]string{"image/btrfs/": ""})
	for _, c := range []struct {
		name   string
		podman string
		status Status
		want   string // in Detail or Fix, each of its "|"-separated parts
	}{
		{"overlay", files(t, map[string]string{"overlay-images/": "", "overlay-layers/": "", "overlay/": ""}), Fail,
			`overlay storage driver` + "|" + `driver = "btrfs" in the [storage] table of /etc/containers/storage.conf, then podman system reset`},
		{"btrfs", files(t, map[string]string{"btrfs-images/": "", "btrfs-layers/": "", "btrfs/subvolumes/": ""}), OK, "btrfs driver"},
		{"vfs", files(t, map[string]string{"vfs-images/": "", "vfs-layers/": "", "vfs/dir/": ""}), Fail,
			"vfs storage driver|podman system reset"},
		{"empty", t.TempDir(), Fail, "has no image store|pass --podman-root with Podman's graph root"},
		{"absent", filepath.Join(t.TempDir(), "nope"), "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Run(Options{DockerRoot: docker, PodmanRoot: c.podman, DaemonJSON: "-", Statfs: btrfsFS})
			var pc *Check
			for i := range got {
				if got[i].Name == "Podman storage driver" {
					pc = &got[i]
				}
			}
			if c.status == "" {
				if pc != nil {
					t.Fatalf("a graph root that does not exist is checked: %+v", *pc)
				}
				return
			}
			if pc == nil {
				t.Fatalf("no Podman storage driver check in %+v", got)
			}
			if pc.Status != c.status {
				t.Errorf("%+v; want %s", *pc, c.status)
			}
			for _, w := range strings.Split(c.want, "|") {
				if !strings.Contains(pc.Detail+" "+pc.Fix, w) {
					t.Errorf("%+v lacks %q", *pc, w)
				}
			}
		})
	}
}

// TestContainerdStore: each Docker configuration's data root, as Docker
// 29 lays it out, gets the containerd checks it needs and the fix.
func TestContainerdStore(t *testing.T) {
	btrfsFS := func(string) (FSInfo, error) {
		return FSInfo{Type: unix.BTRFS_SUPER_MAGIC, Total: 100 << 30, Avail: 50 << 30}, nil
	}
	ext4FS := func(string) (FSInfo, error) { return FSInfo{Type: 0xEF53, Total: 100 << 30, Avail: 50 << 30}, nil }
	const meta = "containerd/daemon/io.containerd.metadata.v1.bolt/meta.db"
	for _, c := range []struct {
		name   string
		files  map[string]string
		statfs func(string) (FSInfo, error)
		check  string
		status Status
		want   string // in Detail or Fix, each of its "|"-separated parts
	}{
		{"btrfs snapshotter", map[string]string{meta: "x", "containerd/daemon/io.containerd.snapshotter.v1.btrfs/": ""}, btrfsFS,
			"containerd snapshotter", OK, "btrfs snapshotter"},
		{"overlayfs snapshotter (Docker 29's default)", map[string]string{meta: "x", "containerd/daemon/io.containerd.snapshotter.v1.overlayfs/": ""}, btrfsFS,
			"containerd snapshotter", Fail, `snapshotters there: overlayfs|"containerd-snapshotter": true`},
		{"not on btrfs", map[string]string{meta: "x", "containerd/daemon/io.containerd.snapshotter.v1.overlayfs/": ""}, ext4FS,
			"containerd root on btrfs", Fail, "btrfs"},
		{"no metadata yet", map[string]string{"containerd/daemon/": ""}, btrfsFS,
			"containerd snapshotter", Fail, "no containerd metadata database|--containerd-root"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := files(t, c.files)
			got := Run(Options{DockerRoot: root, ContainerdRoot: filepath.Join(t.TempDir(), "none"), DaemonJSON: "-", Statfs: c.statfs})
			var pc *Check
			for i := range got {
				if got[i].Name == "storage driver" {
					t.Errorf("the classic store's check runs for a containerd store: %+v", got[i])
				}
				if got[i].Name == c.check {
					pc = &got[i]
				}
			}
			if pc == nil {
				t.Fatalf("no %s check in %+v", c.check, got)
			}
			if pc.Status != c.status {
				t.Errorf("%+v; want %s", *pc, c.status)
			}
			for _, w := range strings.Split(c.want, "|") {
				if !strings.Contains(pc.Detail+" "+pc.Fix, w) {
					t.Errorf("%+v lacks %q", *pc, w)
				}
			}
		})
	}
}
