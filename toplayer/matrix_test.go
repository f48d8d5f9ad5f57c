package toplayer

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dockroot/dockroot/internal/securejoin"
)

// TestApply runs the behavioural matrix on the filesystem of t.TempDir().
// TestApplyBtrfs (root tier) runs the same matrix on a loop btrfs.
func TestApply(t *testing.T) {
	runMatrix(t, func(t *testing.T) string { return t.TempDir() })
}

type matrixCase struct {
	name string
	run  func(t *testing.T, f *fixture)
}

func runMatrix(t *testing.T, newBase func(t *testing.T) string) {
	groups := [][]matrixCase{attributeCases, typeChangeCases(), escapeCases, whiteoutCases, rootAndErrorCases, deepCases, symlinkedDirCases, accountCases}
	for _, g := range groups {
		for _, c := range g {
			t.Run(c.name, func(t *testing.T) { c.run(t, newFixture(t, newBase(t))) })
		}
	}
}

var attributeCases = []matrixCase{
	{"file content, mode and times replace the image's", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/motd"), "image motd, longer than the new one\n", 0o644)
		mustFile(t, f.s("etc/motd"), "machine motd\n", 0o640)
		setTimesNoFollow(t, f.s("etc/motd"), time1, time2)
		f.apply(t)
		assertTimes(t, f.r("etc/motd"), time1, time2) // before reading it
		assertMode(t, f.r("etc/motd"), 0o640)
		assertContent(t, f.r("etc/motd"), "machine motd\n")
	}},
	{"modes a umask would strip are kept, on new and replaced files", func(t *testing.T, f *fixture) {
		// Files are created with their final permission bits, through the
		// process umask; what it strips must be put back.
		old := unix.Umask(0o077)
		defer unix.Umask(old)
		mustFile(t, f.r("srv/replaced"), "image", 0o600)
		for p, mode := range map[string]uint32{"srv/shared": 0o666, "srv/replaced": 0o664, "srv/private": 0o400} {
			mustFile(t, f.s(p), p, 0o600)
			chmodRaw(t, f.s(p), mode)
		}
		mustMkdir(t, f.s("srv/open"), 0o755)
		chmodRaw(t, f.s("srv/open"), 0o777)
		chmodRaw(t, f.s("srv"), 0o775)
		f.apply(t)
		assertMode(t, f.r("srv/shared"), 0o666)
		assertMode(t, f.r("srv/replaced"), 0o664)
		assertMode(t, f.r("srv/private"), 0o400)
		assertMode(t, f.r("srv/open"), 0o777)
		assertMode(t, f.r("srv"), 0o775)
		assertContent(t, f.r("srv/replaced"), "srv/replaced")
	}},
	{"setuid, setgid and sticky bits", func(t *testing.T, f *fixture) {
		mustFile(t, f.s("bin/su"), "su", 0o755)
		chmodRaw(t, f.s("bin/su"), 0o4755)
		mustFile(t, f.s("bin/wall"), "wall", 0o755)
		chmodRaw(t, f.s("bin/wall"), 0o2755)
		mustFile(t, f.s("bin/both"), "both", 0o755)
		chmodRaw(t, f.s("bin/both"), 0o6711)
		mustMkdir(t, f.s("tmp"), 0o777)
		chmodRaw(t, f.s("tmp"), 0o1777)
		mustMkdir(t, f.s("srv/shared"), 0o775)
		chmodRaw(t, f.s("srv/shared"), 0o2775)
		mustMkdir(t, f.r("tmp"), 0o755) // merged: the top layer's mode wins
		f.apply(t)
		assertMode(t, f.r("bin/su"), 0o4755)
		assertMode(t, f.r("bin/wall"), 0o2755)
		assertMode(t, f.r("bin/both"), 0o6711)
		assertMode(t, f.r("tmp"), 0o1777)
		assertMode(t, f.r("srv/shared"), 0o2775)
	}},
	{"owner, and setuid survives the chown", func(t *testing.T, f *fixture) {
		needRoot(t, "chown to other users")
		mustFile(t, f.s("usr/bin/tool"), "tool", 0o755)
		mustChown(t, f.s("usr/bin/tool"), 1000, 1000)
		chmodRaw(t, f.s("usr/bin/tool"), 0o6755)
		mustMkdir(t, f.s("home/alice"), 0o700)
		mustChown(t, f.s("home/alice"), 1001, 1002)
		mustSymlink(t, "alice", f.s("home/al"))
		mustChown(t, f.s("home/al"), 1003, 1004)
		mustMkdir(t, f.r("home/alice"), 0o755) // image's dir is root-owned
		f.apply(t)
		assertOwner(t, f.r("usr/bin/tool"), 1000, 1000)
		assertMode(t, f.r("usr/bin/tool"), 0o6755)
		assertOwner(t, f.r("home/alice"), 1001, 1002)
		assertMode(t, f.r("home/alice"), 0o700)
		assertOwner(t, f.r("home/al"), 1003, 1004)
	}},
	{"etc/shadow keeps 0640 root:shadow and 0000", func(t *testing.T, f *fixture) {
		needRoot(t, "read a 0000 file and chown to the shadow group")
		mustFile(t, f.r("etc/shadow"), "root:*:1::::::\n", 0o640)
		mustChown(t, f.r("etc/shadow"), 0, 42)
		mustFile(t, f.s("etc/shadow"), "root:$6$x:1::::::\n", 0o640)
		mustChown(t, f.s("etc/shadow"), 0, 42)
		mustFile(t, f.s("etc/gshadow"), "root:*::\n", 0)
		mustChown(t, f.s("etc/gshadow"), 0, 42)
		f.apply(t)
		assertMode(t, f.r("etc/shadow"), 0o640)
		assertOwner(t, f.r("etc/shadow"), 0, 42)
		assertContent(t, f.r("etc/shadow"), "root:$6$x:1::::::\n")
		assertMode(t, f.r("etc/gshadow"), 0)
		assertOwner(t, f.r("etc/gshadow"), 0, 42)
	}},
	{"directory times are set after their contents", func(t *testing.T, f *fixture) {
		mustFile(t, f.s("etc/ssh/sshd_config.d/local.conf"), "Port 2222\n", 0o644)
		setTimesNoFollow(t, f.s("etc/ssh/sshd_config.d"), time2, time1)
		setTimesNoFollow(t, f.s("etc/ssh"), time1, time2)
		setTimesNoFollow(t, f.s("etc"), time1, time1)
		mustFile(t, f.r("etc/ssh/ssh_config"), "image\n", 0o644) // merged dir gains an entry
		f.apply(t)
		assertTimes(t, f.r("etc/ssh/sshd_config.d"), time2, time1)
		assertTimes(t, f.r("etc/ssh"), time1, time2)
		assertTimes(t, f.r("etc"), time1, time1)
	}},
	{"symlinks stay symlinks with their own times", func(t *testing.T, f *fixture) {
		mustSymlink(t, "../usr/share/zoneinfo/Europe/Berlin", f.s("etc/localtime"))
		mustSymlink(t, "/nonexistent/absolute", f.s("etc/dangling"))
		setTimesNoFollow(t, f.s("etc/localtime"), time1, time2)
		mustFile(t, f.r("etc/localtime"), "UTC file in the image", 0o644)
		f.apply(t)
		assertTimes(t, f.r("etc/localtime"), time1, time2) // before readlink updates the atime
		assertLink(t, f.r("etc/localtime"), "../usr/share/zoneinfo/Europe/Berlin")
		assertLink(t, f.r("etc/dangling"), "/nonexistent/absolute")
	}},
	{"user xattrs on files and directories", func(t *testing.T, f *fixture) {
		needUserXattr(t, f.src)
		needUserXattr(t, f.root)
		mustFile(t, f.s("opt/app/data"), "d", 0o644)
		for _, p := range []string{f.s("opt/app/data"), f.s("opt/app")} {
			if err := unix.Setxattr(p, "user.origin", []byte("machine"), 0); err != nil {
				t.Fatal(err)
			}
			if err := unix.Setxattr(p, "user.empty", nil, 0); err != nil {
				t.Fatal(err)
			}
		}
		// Read-only in the top layer: Apply must set xattrs before chmod.
		chmodRaw(t, f.s("opt/app/data"), 0o444)
		chmodRaw(t, f.s("opt/app"), 0o555)
		defer os.Chmod(f.s("opt/app"), 0o755)
		defer os.Chmod(f.r("opt/app"), 0o755)
		f.apply(t)
		for _, p := range []string{f.r("opt/app/data"), f.r("opt/app")} {
			if v := getXattrT(t, p, "user.origin"); string(v) != "machine" {
				t.Errorf("%s user.origin = %q", p, v)
			}
			if v := getXattrT(t, p, "user.empty"); len(v) != 0 {
				t.Errorf("%s user.empty = %q", p, v)
			}
		}
		assertMode(t, f.r("opt/app/data"), 0o444)
		assertMode(t, f.r("opt/app"), 0o555)
	}},
	{"security.capability survives the chown; trusted xattrs on a symlink", func(t *testing.T, f *fixture) {
		needRoot(t, "set security.capability and trusted.* xattrs")
		mustFile(t, f.s("usr/bin/ping"), "ping", 0o755)
		mustChown(t, f.s("usr/bin/ping"), 1000, 1000)
		// VFS_CAP_REVISION_2 with CAP_NET_RAW (13) permitted and effective.
		capv2 := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		if err := unix.Setxattr(f.s("usr/bin/ping"), "security.capability", capv2, 0); err != nil {
			t.Skipf("source filesystem refuses security.capability: %v", err)
		}
		if err := unix.Setxattr(f.s("usr/bin/ping"), "trusted.overlay.x", []byte("t"), 0); err != nil {
			t.Fatal(err)
		}
		mustSymlink(t, "ping", f.s("usr/bin/ping4"))
		if err := unix.Lsetxattr(f.s("usr/bin/ping4"), "trusted.marker", []byte("link"), 0); err != nil {
			t.Fatal(err)
		}
		f.apply(t)
		assertOwner(t, f.r("usr/bin/ping"), 1000, 1000)
		if v := getXattrT(t, f.r("usr/bin/ping"), "security.capability"); !bytes.Equal(v, capv2) {
			t.Errorf("security.capability = %x, want %x", v, capv2)
		}
		if v := getXattrT(t, f.r("usr/bin/ping"), "trusted.overlay.x"); string(v) != "t" {
			t.Errorf("trusted.overlay.x = %q", v)
		}
		if v := getXattrT(t, f.r("usr/bin/ping4"), "trusted.marker"); string(v) != "link" {
			t.Errorf("symlink trusted.marker = %q", v)
		}
	}},
	{"hard links stay linked, across directories", func(t *testing.T, f *fixture) {
		mustFile(t, f.s("a/x"), "shared", 0o644)
		mustLink(t, f.s("a/x"), f.s("a/y"))
		mustLink(t, f.s("a/x"), f.s("b/z"))
		mustLink(t, f.s("a/x"), f.s("c/d/w"))
		mustFile(t, f.s("a/alone"), "alone", 0o644)
		mustFile(t, f.r("b/z"), "image file in the way", 0o644)
		sum := f.apply(t)
		want := lstat(t, f.r("a/x"))
		for _, p := range []string{"a/y", "b/z", "c/d/w"} {
			if st := lstat(t, f.r(p)); st.Ino != want.Ino || st.Dev != want.Dev {
				t.Errorf("%s is inode %d, want a hard link to a/x (inode %d)", p, st.Ino, want.Ino)
			}
		}
		if want.Nlink != 4 {
			t.Errorf("a/x has %d links, want 4", want.Nlink)
		}
		if src := lstat(t, f.s("a/x")); src.Ino == want.Ino && src.Dev == want.Dev {
			t.Errorf("destination is linked to the top layer's own inode")
		}
		assertContent(t, f.r("c/d/w"), "shared")
		if sum.Files != 2 || sum.HardLinks != 3 || sum.Bytes != int64(len("shared")+len("alone")) {
			t.Errorf("summary %+v: want 2 files, 3 hard links, 11 bytes", sum)
		}
	}},
	{"a hard-linked destination file is replaced, not written through", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("bin/busybox"), "busybox", 0o755)
		mustLink(t, f.r("bin/busybox"), f.r("bin/sh"))
		mustFile(t, f.s("bin/sh"), "dash", 0o755)
		f.apply(t)
		assertContent(t, f.r("bin/sh"), "dash")
		assertContent(t, f.r("bin/busybox"), "busybox")
	}},
	{"fifo is recreated", func(t *testing.T, f *fixture) {
		mustMkdir(t, f.s("run"), 0o755)
		if err := unix.Mkfifo(f.s("run/initctl"), 0o600); err != nil {
			t.Fatal(err)
		}
		chmodRaw(t, f.s("run/initctl"), 0o620)
		setTimesNoFollow(t, f.s("run/initctl"), time1, time2)
		sum := f.apply(t)
		assertType(t, f.r("run/initctl"), unix.S_IFIFO)
		assertMode(t, f.r("run/initctl"), 0o620)
		assertTimes(t, f.r("run/initctl"), time1, time2)
		if sum.Specials != 1 {
			t.Errorf("Specials = %d, want 1", sum.Specials)
		}
	}},
	{"device nodes are recreated", func(t *testing.T, f *fixture) {
		needRoot(t, "mknod device nodes")
		mustMkdir(t, f.s("dev"), 0o755)
		if err := unix.Mknod(f.s("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(f.s("dev/loop200"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))); err != nil {
			t.Fatal(err)
		}
		chmodRaw(t, f.s("dev/null"), 0o666)
		mustChown(t, f.s("dev/loop200"), 0, 6)
		chmodRaw(t, f.s("dev/loop200"), 0o660)
		f.apply(t)
		st := assertType(t, f.r("dev/null"), unix.S_IFCHR)
		if st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("dev/null is %d:%d, want 1:3", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		assertMode(t, f.r("dev/null"), 0o666)
		st = assertType(t, f.r("dev/loop200"), unix.S_IFBLK)
		if st.Rdev != unix.Mkdev(7, 200) {
			t.Errorf("dev/loop200 is %d:%d, want 7:200", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		assertOwner(t, f.r("dev/loop200"), 0, 6)
		assertMode(t, f.r("dev/loop200"), 0o660)
	}},
	{"sockets are skipped with a note", func(t *testing.T, f *fixture) {
		mustMkdir(t, f.s("run"), 0o755)
		sock := f.s("run/s")
		if len(sock) >= 108 {
			t.Skipf("socket path %s is longer than sun_path", sock)
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
			t.Fatal(err)
		}
		unix.Close(fd) // the socket file stays
		sum := f.apply(t)
		assertAbsent(t, f.r("run/s"))
		if len(sum.Skipped) != 1 || !strings.Contains(sum.Skipped[0], sock) {
			t.Errorf("Skipped = %q, want one note naming %s", sum.Skipped, sock)
		}
	}},
	{"large and sparse files keep content and holes", func(t *testing.T, f *fixture) {
		big := make([]byte, 3<<20+123)
		if _, err := rand.Read(big); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.s("big"), big, 0o644); err != nil {
			t.Fatal(err)
		}
		sp, err := os.Create(f.s("sparse"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sp.WriteAt([]byte("data in the middle"), 8<<20); err != nil {
			t.Fatal(err)
		}
		if err := sp.Truncate(16 << 20); err != nil {
			t.Fatal(err)
		}
		sp.Close()
		sum := f.apply(t)
		got, err := os.ReadFile(f.r("big"))
		if err != nil || !bytes.Equal(got, big) {
			t.Errorf("big: content differs (err %v, %d bytes)", err, len(got))
		}
		gotSparse, _ := os.ReadFile(f.r("sparse"))
		wantSparse, _ := os.ReadFile(f.s("sparse"))
		if !bytes.Equal(gotSparse, wantSparse) {
			t.Errorf("sparse: content differs")
		}
		if srcSt := lstat(t, f.s("sparse")); srcSt.Blocks*512 < 1<<20 {
			if st := lstat(t, f.r("sparse")); st.Blocks*512 >= 1<<20 {
				t.Errorf("sparse: %d bytes allocated for 18 bytes of data; holes were filled", st.Blocks*512)
			}
		}
		if want := int64(len(big) + 16<<20); sum.Bytes != want {
			t.Errorf("Bytes = %d, want %d", sum.Bytes, want)
		}
	}},
	{"summary counts and a second apply gives the same tree", func(t *testing.T, f *fixture) {
		mustFile(t, f.s("etc/hostname"), "box\n", 0o644)
		mustFile(t, f.s("etc/hosts"), "127.0.0.1 box\n", 0o644)
		mustLink(t, f.s("etc/hosts"), f.s("etc/hosts.bak"))
		mustSymlink(t, "hostname", f.s("etc/name"))
		mustMkdir(t, f.s("var/empty"), 0o755)
		if err := unix.Mkfifo(f.s("var/fifo"), 0o600); err != nil {
			t.Fatal(err)
		}
		mustFile(t, f.s("etc/.wh.machine-id"), "", 0o644)
		mustFile(t, f.r("etc/machine-id"), "0123\n", 0o444)
		first := f.apply(t)
		want := Summary{Files: 2, Bytes: 4 + 14, Dirs: 3, Symlinks: 1, HardLinks: 1, Specials: 1, Whiteouts: 1}
		// Copied depends on the filesystems (reflinked or not); the btrfs
		// and cross-filesystem tests check it.
		if first.Copied != 0 && first.Copied != first.Bytes {
			t.Errorf("Copied = %d of %d bytes: all of a file's bytes are copied or none", first.Copied, first.Bytes)
		}
		first.Duration, first.Copied = 0, 0
		if first.String() != want.String() {
			t.Errorf("summary %s, want %s", first, want)
		}
		assertAbsent(t, f.r("etc/machine-id"))
		second := f.apply(t)
		second.Duration, second.Copied = 0, 0
		if second.String() != want.String() {
			t.Errorf("second apply: summary %s, want %s", second, want)
		}
		assertNames(t, f.r("etc"), "hostname", "hosts", "hosts.bak", "name")
		if a, b := lstat(t, f.r("etc/hosts")), lstat(t, f.r("etc/hosts.bak")); a.Ino != b.Ino || a.Nlink != 2 {
			t.Errorf("after a second apply hosts/hosts.bak: inodes %d/%d nlink %d, want one inode with 2 links", a.Ino, b.Ino, a.Nlink)
		}
	}},
}

// typeChangeCases covers every (destination kind, top-layer kind) pair: the
// top layer's kind wins, a replaced symlink's target is untouched; the one
// exception is a directory over a symlink to a directory inside the new
// root, which merges into that directory (symlinkedDirCases).
func typeChangeCases() []matrixCase {
	dstKinds := []struct {
		name string
		make func(t *testing.T, f *fixture, p string)
	}{
		{"nothing", func(t *testing.T, f *fixture, p string) {}},
		{"file", func(t *testing.T, f *fixture, p string) { mustFile(t, p, "image file", 0o644) }},
		{"dir", func(t *testing.T, f *fixture, p string) {
			mustFile(t, filepath.Join(p, "inner"), "image inner", 0o644)
			mustSymlink(t, f.outside, filepath.Join(p, "sub", "out"))
		}},
		{"symlink to file", func(t *testing.T, f *fixture, p string) {
			mustFile(t, f.r("target-file"), "target", 0o644)
			mustSymlink(t, "target-file", p)
		}},
		{"symlink to dir", func(t *testing.T, f *fixture, p string) {
			mustFile(t, f.r("target-dir/child"), "target child", 0o644)
			mustSymlink(t, "target-dir", p)
		}},
		{"symlink to outside dir", func(t *testing.T, f *fixture, p string) { mustSymlink(t, f.outside, p) }},
		{"dangling symlink", func(t *testing.T, f *fixture, p string) { mustSymlink(t, "nowhere", p) }},
		{"fifo", func(t *testing.T, f *fixture, p string) {
			if err := unix.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	srcKinds := []struct {
		name  string
		make  func(t *testing.T, p string)
		check func(t *testing.T, f *fixture, p, dstKind string)
	}{
		{"file", func(t *testing.T, p string) { mustFile(t, p, "top file", 0o600) },
			func(t *testing.T, f *fixture, p, _ string) {
				assertContent(t, p, "top file")
				assertMode(t, p, 0o600)
			}},
		{"dir", func(t *testing.T, p string) { mustFile(t, filepath.Join(p, "top-child"), "top child", 0o644) },
			func(t *testing.T, f *fixture, p, dstKind string) {
				if dstKind == "symlink to dir" { // merged into the symlink's target
					assertLink(t, p, "target-dir")
					assertContent(t, f.r("target-dir/top-child"), "top child")
					assertNames(t, f.r("target-dir"), "child", "top-child")
					return
				}
				assertType(t, p, unix.S_IFDIR)
				assertContent(t, filepath.Join(p, "top-child"), "top child")
				if dstKind == "dir" { // two directories merge
					assertNames(t, p, "inner", "sub", "top-child")
				} else {
					assertNames(t, p, "top-child")
				}
			}},
		{"symlink", func(t *testing.T, p string) { mustSymlink(t, "/etc/top-target", p) },
			func(t *testing.T, f *fixture, p, _ string) { assertLink(t, p, "/etc/top-target") }},
	}
	var cases []matrixCase
	for _, d := range dstKinds {
		for _, s := range srcKinds {
			cases = append(cases, matrixCase{"type change: " + s.name + " over " + d.name, func(t *testing.T, f *fixture) {
				d.make(t, f, f.r("x"))
				s.make(t, f.s("x"))
				f.apply(t)
				s.check(t, f, f.r("x"), d.name)
				switch d.name {
				case "symlink to file":
					assertContent(t, f.r("target-file"), "target")
				case "symlink to dir":
					assertContent(t, f.r("target-dir/child"), "target child")
					if s.name != "dir" {
						assertNames(t, f.r("target-dir"), "child")
					}
				}
			}})
		}
	}
	return cases
}

// The top layer's etc/passwd and etc/group in cases about where writes
// land: well-formed, since Apply merges them into the image's.
const (
	machinePasswd = "alice:x:1000:1000::/home/alice:/bin/bash\n"
	machineGroup  = "alice:x:1000:\n"
)

var escapeCases = []matrixCase{
	{"image etc -> /outside (absolute): etc becomes a real directory", func(t *testing.T, f *fixture) {
		mustSymlink(t, f.outside, f.r("etc"))
		mustFile(t, f.s("etc/passwd"), machinePasswd, 0o644)
		mustFile(t, f.s("etc/sub/deeper"), "deeper\n", 0o644)
		f.apply(t)
		assertType(t, f.r("etc"), unix.S_IFDIR)
		assertContent(t, f.r("etc/passwd"), machinePasswd)
		assertNames(t, f.r("etc"), "passwd", "sub")
	}},
	{"image etc -> ../../.. (relative climb) stops at the new root, and merges there", func(t *testing.T, f *fixture) {
		// After chroot, /etc/../../.. is /: the top layer's etc/ merges
		// into the new root's own directory, never into base.
		mustSymlink(t, "../../..", f.r("etc"))
		mustFile(t, f.s("etc/passwd"), machinePasswd, 0o644)
		f.apply(t)
		assertLink(t, f.r("etc"), "../../..")
		assertContent(t, f.r("passwd"), machinePasswd)
	}},
	{"image etc/passwd -> victim: the link is replaced, the victim untouched", func(t *testing.T, f *fixture) {
		mustSymlink(t, filepath.Join(f.outside, "victim"), f.r("etc/passwd"))
		mustSymlink(t, "../../../../outside/victim", f.r("etc/group"))
		mustFile(t, f.s("etc/passwd"), machinePasswd, 0o644)
		mustFile(t, f.s("etc/group"), machineGroup, 0o644)
		f.apply(t)
		assertContent(t, f.r("etc/passwd"), machinePasswd)
		assertContent(t, f.r("etc/group"), machineGroup)
	}},
	{"symlink loops in the image are replaced, not resolved", func(t *testing.T, f *fixture) {
		mustSymlink(t, "etc", f.r("etc"))
		mustSymlink(t, "b", f.r("a"))
		mustSymlink(t, "a", f.r("b"))
		mustFile(t, f.s("etc/x"), "x", 0o644)
		mustFile(t, f.s("a/y"), "y", 0o644)
		mustFile(t, f.s("b"), "b", 0o644)
		f.apply(t)
		assertContent(t, f.r("etc/x"), "x")
		assertContent(t, f.r("a/y"), "y")
		assertContent(t, f.r("b"), "b")
	}},
	{"hard link whose directory was a symlink to outside in the image", func(t *testing.T, f *fixture) {
		mustSymlink(t, f.outside, f.r("etc"))
		mustSymlink(t, f.outside, f.r("usr"))
		mustFile(t, f.s("etc/conf"), "linked", 0o644)
		mustLink(t, f.s("etc/conf"), f.s("usr/conf"))
		f.apply(t)
		if a, b := lstat(t, f.r("etc/conf")), lstat(t, f.r("usr/conf")); a.Ino != b.Ino {
			t.Errorf("etc/conf and usr/conf are not linked")
		}
	}},
	{"whiteout under a directory that was a symlink to outside", func(t *testing.T, f *fixture) {
		mustSymlink(t, f.outside, f.r("etc"))
		mustFile(t, f.s("etc/.wh.victim"), "", 0o644)
		mustFile(t, f.s("etc/.wh.keep"), "", 0o644)
		f.apply(t)
		assertType(t, f.r("etc"), unix.S_IFDIR)
		assertNames(t, f.r("etc"))
	}},
	{"whiteout of a directory holding links to outside does not follow them", func(t *testing.T, f *fixture) {
		mustSymlink(t, f.outside, f.r("gone/out"))
		mustSymlink(t, "../../../..", f.r("gone/sub/up"))
		mustFile(t, f.r("gone/sub/file"), "f", 0o644)
		mustSymlink(t, f.outside, f.r("link-to-outside"))
		mustFile(t, f.s(".wh.gone"), "", 0o644)
		mustFile(t, f.s(".wh.link-to-outside"), "", 0o644)
		f.apply(t)
		assertAbsent(t, f.r("gone"))
		assertAbsent(t, f.r("link-to-outside"))
	}},
}

var whiteoutCases = []matrixCase{
	{"whiteouts delete a file, a dir, a symlink and a missing name", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/old.conf"), "old", 0o644)
		mustFile(t, f.r("etc/old.d/a/b"), "b", 0o644)
		mustFile(t, f.r("etc/target"), "target", 0o644)
		mustSymlink(t, "target", f.r("etc/link"))
		mustFile(t, f.r("etc/kept"), "kept", 0o644)
		for _, n := range []string{"old.conf", "old.d", "link", "never-existed"} {
			mustFile(t, f.s("etc/.wh."+n), "", 0o644)
		}
		sum := f.apply(t)
		assertNames(t, f.r("etc"), "kept", "target")
		assertContent(t, f.r("etc/target"), "target")
		if sum.Whiteouts != 4 {
			t.Errorf("Whiteouts = %d, want 4", sum.Whiteouts)
		}
	}},
	{"a whiteout and an entry of the same name: the entry stays", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/x/old"), "old", 0o644)
		mustFile(t, f.s("etc/.wh.x"), "", 0o644)
		mustFile(t, f.s("etc/x/new"), "new", 0o644)
		f.apply(t)
		assertNames(t, f.r("etc/x"), "new")
	}},
	{"opaque directory replaces the image's contents", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/apt/sources.list.d/a.list"), "a", 0o644)
		mustFile(t, f.r("etc/apt/sources.list.d/sub/b"), "b", 0o644)
		mustSymlink(t, f.outside, f.r("etc/apt/sources.list.d/out"))
		mustFile(t, f.r("etc/apt/apt.conf"), "kept", 0o644)
		mustFile(t, f.s("etc/apt/sources.list.d/.wh..wh..opq"), "", 0o644)
		mustFile(t, f.s("etc/apt/sources.list.d/mine.list"), "mine", 0o644)
		mustFile(t, f.s("new/.wh..wh..opq"), "", 0o644) // opaque dir the image lacks
		sum := f.apply(t)
		assertNames(t, f.r("etc/apt/sources.list.d"), "mine.list")
		assertNames(t, f.r("etc/apt"), "apt.conf", "sources.list.d")
		assertNames(t, f.r("new"))
		if sum.Whiteouts != 2 {
			t.Errorf("Whiteouts = %d, want 2", sum.Whiteouts)
		}
	}},
	{"aufs metadata is skipped", func(t *testing.T, f *fixture) {
		mustFile(t, f.s(".wh..wh.plnk/123.456"), "", 0o644)
		mustFile(t, f.s("etc/.wh..wh.aufs"), "", 0o644)
		mustFile(t, f.s("etc/real"), "r", 0o644)
		f.apply(t)
		assertNames(t, f.root, "etc")
		assertNames(t, f.r("etc"), "real")
	}},
}

var rootAndErrorCases = []matrixCase{
	{"the new root keeps the image's own mode and owner", func(t *testing.T, f *fixture) {
		chmodRaw(t, f.root, 0o755)
		chmodRaw(t, f.src, 0o700)
		if os.Geteuid() == 0 {
			mustChown(t, f.src, 1234, 1234)
		}
		mustFile(t, f.s("etc/x"), "x", 0o644)
		before := lstat(t, f.root)
		f.apply(t)
		after := lstat(t, f.root)
		if after.Mode != before.Mode || after.Uid != before.Uid || after.Gid != before.Gid {
			t.Errorf("new root changed from mode %#o %d:%d to %#o %d:%d", before.Mode, before.Uid, before.Gid, after.Mode, after.Uid, after.Gid)
		}
	}},
	{"opaque marker at the top layer's root is refused", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("sbin/init"), "init", 0o755)
		mustFile(t, f.s(".wh..wh..opq"), "", 0o644)
		_, err := f.applyErr(t)
		if err == nil || !strings.Contains(err.Error(), ".wh..wh..opq") {
			t.Fatalf("err = %v, want a refusal naming .wh..wh..opq", err)
		}
		assertContent(t, f.r("sbin/init"), "init")
	}},
	{"a whiteout naming . or nothing is refused", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/x"), "x", 0o644)
		mustFile(t, f.s("etc/.wh.."), "", 0o644)
		_, err := f.applyErr(t)
		var e *Error
		if !errors.As(err, &e) || e.Op != "whiteout" || !strings.Contains(e.Src, ".wh..") {
			t.Fatalf("err = %v, want a whiteout *Error naming the source", err)
		}
		assertContent(t, f.r("etc/x"), "x")
	}},
	{"a missing top layer or new root fails with ENOENT and names it", func(t *testing.T, f *fixture) {
		_, err := Apply(f.root, filepath.Join(f.base, "no-such-src"))
		if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "no-such-src") || !strings.Contains(err.Error(), "toplayer_path=") {
			t.Errorf("missing src: err = %v", err)
		}
		_, err = Apply(filepath.Join(f.base, "no-such-root"), f.src)
		if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "no-such-root") {
			t.Errorf("missing root: err = %v", err)
		}
	}},
	{"a failed write names source, destination and operation", func(t *testing.T, f *fixture) {
		needRoot(t, "make a directory immutable")
		if _, err := exec.LookPath("chattr"); err != nil {
			t.Skip("chattr not found (e2fsprogs)")
		}
		mustFile(t, f.r("etc/passwd"), "image", 0o644)
		mustFile(t, f.s("etc/passwd"), machinePasswd, 0o644)
		if out, err := exec.Command("chattr", "+i", f.r("etc")).CombinedOutput(); err != nil {
			t.Skipf("filesystem refuses chattr +i: %v %s", err, out)
		}
		defer exec.Command("chattr", "-i", f.r("etc")).Run()
		_, err := f.applyErr(t)
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, unix.EPERM) {
			t.Fatalf("err = %v, want *Error wrapping EPERM", err)
		}
		if e.Src != f.s("etc/passwd") || e.Dst != f.r("etc/passwd") || e.Op != "create" {
			t.Errorf("error names op %q src %q dst %q, want create %s -> %s", e.Op, e.Src, e.Dst, f.s("etc/passwd"), f.r("etc/passwd"))
		}
		if !strings.Contains(err.Error(), "immutable") {
			t.Errorf("error %q does not say what to check", err)
		}
		assertContent(t, f.r("etc/passwd"), "image")
	}},
}

// maxErrorMessage bounds (*Error).Error(): a boot log record stays under
// 1 KB (STYLE item 5), however deep the paths it names.
const maxErrorMessage = 1024

// deepCases are top layers with entries whose full path is longer than
// PATH_MAX: every source and destination access must go through directory
// descriptors (issue 17 item 6).
var deepCases = []matrixCase{
	{"a symlink, fifo, device and hard-linked file below PATH_MAX's reach", func(t *testing.T, f *fixture) {
		comps := deepComponents()
		sfd := mkdirDeep(t, f.src, comps)
		if err := unix.Symlinkat("../target", sfd, "link"); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknodat(sfd, "fifo", unix.S_IFIFO|0o640, 0); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Openat(sfd, "file", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		unix.Write(fd, []byte("deep\n"))
		unix.Close(fd)
		if err := unix.Linkat(sfd, "file", sfd, "file2", 0); err != nil {
			t.Fatal(err)
		}
		root := os.Geteuid() == 0
		if root {
			if err := unix.Mknodat(sfd, "null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
				t.Fatal(err)
			}
			if err := unix.Lsetxattr(fmt.Sprintf("/proc/self/fd/%d/link", sfd), "trusted.deep", []byte("yes"), 0); err != nil {
				t.Fatal(err)
			}
		}
		// Part of the chain already exists in the image: merged, not replaced.
		mkdirDeep(t, f.root, comps[:3])
		sum := f.apply(t)
		dfd := openDeep(t, f.root, comps)
		if got, err := readlinkAt(dfd, "link", 0); err != nil || got != "../target" {
			t.Errorf("link -> %q (%v), want ../target", got, err)
		}
		if st := fstatatT(t, dfd, "fifo", unix.S_IFIFO); st.Mode&0o7777 != 0o640 {
			t.Errorf("fifo mode %#o, want 0640", st.Mode&0o7777)
		}
		a, b := fstatatT(t, dfd, "file", unix.S_IFREG), fstatatT(t, dfd, "file2", unix.S_IFREG)
		if a.Ino != b.Ino || a.Size != 5 {
			t.Errorf("file/file2: inodes %d/%d size %d, want one 5-byte inode", a.Ino, b.Ino, a.Size)
		}
		if root {
			if st := fstatatT(t, dfd, "null", unix.S_IFCHR); st.Rdev != unix.Mkdev(1, 3) {
				t.Errorf("null is %d:%d, want 1:3", unix.Major(st.Rdev), unix.Minor(st.Rdev))
			}
			v := make([]byte, 16)
			n, err := unix.Lgetxattr(fmt.Sprintf("/proc/self/fd/%d/link", dfd), "trusted.deep", v)
			if err != nil || string(v[:max(n, 0)]) != "yes" {
				t.Errorf("link trusted.deep = %q (%v), want yes", v[:max(n, 0)], err)
			}
		}
		if sum.Symlinks != 1 || sum.HardLinks != 1 || sum.Dirs != len(comps) {
			t.Errorf("summary %s: want 1 symlink, 1 hard link, %d dirs", sum, len(comps))
		}
	}},
	{"an error below PATH_MAX's reach has a short message and full paths", func(t *testing.T, f *fixture) {
		comps := deepComponents()
		sfd := mkdirDeep(t, f.src, comps)
		if err := unix.Mknodat(sfd, ".wh..", unix.S_IFREG|0o644, 0); err != nil {
			t.Fatal(err)
		}
		_, err := f.applyErr(t)
		var e *Error
		if !errors.As(err, &e) || e.Op != "whiteout" {
			t.Fatalf("err = %v, want a whiteout *Error", err)
		}
		if want := filepath.Join(append([]string{f.src}, append(comps, ".wh..")...)...); e.Src != want {
			t.Errorf("Src is %d bytes, want the full %d-byte path", len(e.Src), len(want))
		}
		if want := filepath.Join(append([]string{f.root}, comps...)...); e.Dst != want {
			t.Errorf("Dst is %d bytes, want the full %d-byte path", len(e.Dst), len(want))
		}
		msg := err.Error()
		if len(msg) > maxErrorMessage {
			t.Errorf("message is %d bytes, want at most %d:\n%.300s...", len(msg), maxErrorMessage, msg)
		}
		if !strings.Contains(msg, "/.wh.. ->") || !strings.Contains(msg, f.src) {
			t.Errorf("message %q does not keep both ends of the source path", msg)
		}
	}},
}

func TestErrorMessageIsBounded(t *testing.T) {
	long := "/" + strings.Repeat("component/", 2000)
	for _, tc := range []struct {
		name string
		err  *Error
		want string // "" to check only the bound and the ends
	}{
		{"short paths are kept whole", &Error{Op: "create", Src: "/top/etc/x", Dst: "/root/etc/x", Err: unix.EPERM},
			"toplayer: create /top/etc/x -> /root/etc/x: operation not permitted (the top layer must be applied as root, and the destination must not be immutable)"},
		{"long paths", &Error{Op: "symlink", Src: long + "src-end", Dst: long + "dst-end", Err: unix.ENOSPC}, ""},
		{"long cause", &Error{Op: "whiteout", Src: "/top/x", Dst: "/root/x", Err: fmt.Errorf("%s: %w", long, unix.EPERM)}, ""},
		{"everything long", &Error{Op: strings.Repeat("op ", 500), Src: long, Dst: long, Err: fmt.Errorf("%s: %w", long, unix.EROFS)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.err.Error()
			if tc.want != "" && msg != tc.want {
				t.Errorf("message %q, want %q", msg, tc.want)
			}
			if len(msg) > maxErrorMessage {
				t.Errorf("message is %d bytes, want at most %d", len(msg), maxErrorMessage)
			}
			if !strings.HasPrefix(msg, "toplayer: ") {
				t.Errorf("message %q lost its start", msg)
			}
			if hint := hintFor(tc.err.Err); hint != "" && !strings.HasSuffix(msg, "("+hint+")") {
				t.Errorf("message %q lost the hint at its end", msg)
			}
			if strings.HasSuffix(tc.err.Src, "src-end") && (!strings.Contains(msg, "src-end ->") || !strings.Contains(msg, "dst-end: ")) {
				t.Errorf("message %q lost the ends of the paths", msg)
			}
		})
	}
}

// TestNodeXattrsProcHint: a failure to copy a symlink's or device's xattrs
// blames /proc only when /proc is not a mounted procfs.
func TestNodeXattrsProcHint(t *testing.T) {
	dir := t.TempDir()
	mustSymlink(t, "target", filepath.Join(dir, "link"))
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if !procMounted(procDir) {
		t.Skip("/proc is not mounted here")
	}
	if err := copyNodeXattrs(procDir, fd, fd, "link"); err != nil {
		t.Errorf("copy onto itself with /proc mounted: %v", err)
	}
	err = copyNodeXattrs(procDir, fd, fd, "missing")
	if !errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "procfs") {
		t.Errorf("missing entry with /proc mounted: err = %v, want ENOENT without blaming /proc", err)
	}
	noProc := t.TempDir()
	err = copyNodeXattrs(noProc, fd, fd, "link")
	if err == nil || !strings.Contains(err.Error(), noProc+" is not a mounted procfs") {
		t.Errorf("proc at an empty directory: err = %v, want it to say so", err)
	}
}

// symlinkedDirCases: a top-layer directory whose name is a symlink in the
// image to a directory inside the new root (merged /usr: lib -> usr/lib)
// merges into that directory, resolved as after chroot into the new root
// (issue 17 item 7).
var symlinkedDirCases = []matrixCase{
	{"merged /usr: lib -> usr/lib keeps the symlink, lib/ merges into usr/lib", func(t *testing.T, f *fixture) {
		mergedUsrCase(t, f, "usr/lib")
	}},
	{"merged /usr: lib -> /usr/lib (absolute, resolved in the new root)", func(t *testing.T, f *fixture) {
		mergedUsrCase(t, f, "/usr/lib")
	}},
	{"merged /usr: lib -> ../../../../usr/lib climbs no higher than the new root", func(t *testing.T, f *fixture) {
		mergedUsrCase(t, f, "../../../../usr/lib")
	}},
	{"a chain of symlinks, relative to where each one really is", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("usr/share/firmware/image-fw"), "image", 0o644)
		mustSymlink(t, "usr/lib", f.r("lib"))
		mustSymlink(t, "lib", f.r("lib64"))
		// Relative to usr/lib, where it really is, not to lib.
		mustSymlink(t, "../share/firmware", f.r("usr/lib/firmware"))
		mustFile(t, f.s("lib64/firmware/x"), "fw", 0o644)
		f.apply(t)
		assertLink(t, f.r("lib64"), "lib")
		assertLink(t, f.r("lib"), "usr/lib")
		assertLink(t, f.r("usr/lib/firmware"), "../share/firmware")
		assertNames(t, f.r("usr/share/firmware"), "image-fw", "x")
		assertContent(t, f.r("usr/share/firmware/x"), "fw")
		f.assertLogged(t, "merging top layer lib64/ into usr/lib: lib64 is a symlink in the image")
		f.assertLogged(t, "merging top layer lib64/firmware/ into usr/share/firmware: usr/lib/firmware is a symlink in the image")
	}},
	{"lib -> /../../../etc resolves inside the new root and merges into etc", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("etc/hostname"), "image\n", 0o644)
		mustSymlink(t, "/../../../etc", f.r("lib"))
		mustFile(t, f.s("lib/firmware/x"), "fw", 0o644)
		f.apply(t)
		assertLink(t, f.r("lib"), "/../../../etc")
		assertContent(t, f.r("etc/firmware/x"), "fw")
		assertContent(t, f.r("etc/hostname"), "image\n")
	}},
	{"lib -> ../../outside and ../../../outside resolve to nothing in the new root: replaced", func(t *testing.T, f *fixture) {
		// Outside the new root, ../../../outside is base/outside.
		mustSymlink(t, "../../outside", f.r("lib"))
		mustSymlink(t, "../../../outside", f.r("lib64"))
		mustFile(t, f.s("lib/firmware/x"), "fw", 0o644)
		mustFile(t, f.s("lib64/victim"), "top", 0o644)
		f.apply(t)
		assertType(t, f.r("lib"), unix.S_IFDIR)
		assertType(t, f.r("lib64"), unix.S_IFDIR)
		assertContent(t, f.r("lib/firmware/x"), "fw")
		assertContent(t, f.r("lib64/victim"), "top")
		f.assertLogged(t, "replacing symlink "+f.r("lib")+" with the top layer's directory")
	}},
	{"a symlink to a file or a dangling one is replaced by the directory", func(t *testing.T, f *fixture) {
		mustFile(t, f.r("usr/lib/file"), "image", 0o644)
		mustSymlink(t, "usr/lib/file", f.r("lib"))
		mustSymlink(t, "usr/lib64", f.r("lib64"))
		mustSymlink(t, "loop", f.r("loop"))
		for _, d := range []string{"lib", "lib64", "loop"} {
			mustFile(t, f.s(d+"/x"), d, 0o644)
		}
		f.apply(t)
		for _, d := range []string{"lib", "lib64", "loop"} {
			assertType(t, f.r(d), unix.S_IFDIR)
			assertContent(t, f.r(d+"/x"), d)
		}
		assertContent(t, f.r("usr/lib/file"), "image")
		assertAbsent(t, f.r("usr/lib64"))
	}},
	{"an opaque directory over a symlinked directory replaces the symlink, never empties the target", func(t *testing.T, f *fixture) {
		// Opaque means "only my entries": merging would empty usr/lib, or
		// the whole new root for lib64 -> /.
		mustFile(t, f.r("sbin/init"), "init", 0o755)
		mustFile(t, f.r("usr/lib/libc.so.6"), "libc", 0o755)
		mustSymlink(t, "usr/lib", f.r("lib"))
		mustSymlink(t, "/", f.r("lib64"))
		for _, d := range []string{"lib", "lib64"} {
			mustFile(t, f.s(d+"/.wh..wh..opq"), "", 0o644)
			mustFile(t, f.s(d+"/mine"), d, 0o644)
		}
		f.apply(t)
		for _, d := range []string{"lib", "lib64"} {
			assertType(t, f.r(d), unix.S_IFDIR)
			assertNames(t, f.r(d), "mine")
		}
		assertContent(t, f.r("sbin/init"), "init")
		assertNames(t, f.r("usr/lib"), "libc.so.6")
	}},
}

// mergedUsrCase applies lib/firmware/x (and a hard link to it that comes
// later in the walk) over a merged-/usr image whose lib is a symlink to
// target, which must resolve to usr/lib in the new root.
func mergedUsrCase(t *testing.T, f *fixture, target string) {
	mustFile(t, f.r("usr/lib/x86_64-linux-gnu/libc.so.6"), "libc", 0o755)
	chmodRaw(t, f.r("usr/lib"), 0o755)
	setTimesNoFollow(t, f.r("usr/lib"), time1, time1)
	mustSymlink(t, target, f.r("lib"))
	mustFile(t, f.s("lib/firmware/x"), "fw", 0o644)
	mustLink(t, f.s("lib/firmware/x"), f.s("var/lib/fw")) // after lib/ in name order
	chmodRaw(t, f.s("lib"), 0o700)
	if os.Geteuid() == 0 {
		mustChown(t, f.s("lib"), 1234, 1234)
	}
	setTimesNoFollow(t, f.s("lib"), time2, time2)
	before := lstat(t, f.r("usr/lib"))
	sum := f.apply(t)
	assertLink(t, f.r("lib"), target)
	assertContent(t, f.r("usr/lib/firmware/x"), "fw")
	assertContent(t, f.r("usr/lib/x86_64-linux-gnu/libc.so.6"), "libc")
	assertNames(t, f.r("usr/lib"), "firmware", "x86_64-linux-gnu")
	if a, b := lstat(t, f.r("usr/lib/firmware/x")), lstat(t, f.r("var/lib/fw")); a.Ino != b.Ino {
		t.Errorf("var/lib/fw is not a hard link to usr/lib/firmware/x")
	}
	if sum.HardLinks != 1 {
		t.Errorf("HardLinks = %d, want 1", sum.HardLinks)
	}
	// usr/lib is the image's: the top layer's lib/ gives it no metadata.
	after := lstat(t, f.r("usr/lib"))
	if after.Mode != before.Mode || after.Uid != before.Uid || after.Gid != before.Gid {
		t.Errorf("usr/lib changed from mode %#o %d:%d to %#o %d:%d", before.Mode, before.Uid, before.Gid, after.Mode, after.Uid, after.Gid)
	}
	if got := time.Unix(0, after.Mtim.Nano()); got.Equal(time2) {
		t.Errorf("usr/lib took the top layer's lib/ mtime")
	}
	if p, err := securejoin.Resolve(f.root, "lib/firmware/x"); err != nil || p != f.r("usr/lib/firmware/x") {
		t.Errorf("securejoin.Resolve(lib/firmware/x) = %s, %v; want %s", p, err, f.r("usr/lib/firmware/x"))
	}
	f.assertLogged(t, "merging top layer lib/ into usr/lib: lib is a symlink in the image")
}

// TestResolveDirAtMatchesSecurejoin: the descriptor walk that decides where
// a top-layer directory over an image symlink goes resolves like
// securejoin.Resolve (the kernel after chroot), and names no directory
// where Resolve's answer is not one.
func TestResolveDirAtMatchesSecurejoin(t *testing.T) {
	f := newFixture(t, t.TempDir())
	mustFile(t, f.r("usr/lib/x86_64-linux-gnu/libc.so.6"), "libc", 0o755)
	mustMkdir(t, f.r("usr/share/firmware"), 0o755)
	mustMkdir(t, f.r("etc"), 0o755)
	links := map[string]string{
		"lib":              "usr/lib",
		"lib32":            "/usr/lib",
		"lib64":            "lib",
		"libx":             "lib/x86_64-linux-gnu",
		"up":               "../../../../usr/lib",
		"abs-up":           "/../../../etc",
		"root":             "/",
		"dot":              ".",
		"usr/lib/firmware": "../share/firmware",
		"usr/lib/back":     "../../lib/x86_64-linux-gnu/../../share",
		"out-rel":          "../../outside",
		"out-rel3":         "../../../outside",
		"out-abs":          f.outside,
		"file":             "usr/lib/x86_64-linux-gnu/libc.so.6",
		"dangling":         "usr/nowhere",
		"loop":             "loop",
		"loop-a":           "loop-b",
		"loop-b":           "loop-a/x",
		"through-file":     "file/x",
	}
	for l, target := range links {
		mustSymlink(t, target, f.r(l))
	}
	rootFd, err := unix.Open(f.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootFd)
	for l := range links {
		want, werr := securejoin.Resolve(f.root, l)
		wantDir := werr == nil
		if wantDir {
			fi, err := os.Lstat(want)
			wantDir = err == nil && fi.IsDir()
		}
		fd, rel, err := resolveDirAt(rootFd, strings.Split(l, "/"))
		if err == nil {
			unix.Close(fd)
		}
		switch {
		case wantDir && err != nil:
			t.Errorf("%s -> %s: %v, want %s", l, links[l], err, want)
		case wantDir && filepath.Join(append([]string{f.root}, rel...)...) != want:
			t.Errorf("%s -> %s: resolved to %q, want %s", l, links[l], rel, want)
		case !wantDir && err == nil:
			t.Errorf("%s -> %s: resolved to directory %q; securejoin says %s (%v), not a directory", l, links[l], rel, want, werr)
		case !wantDir && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.ELOOP):
			t.Errorf("%s -> %s: err %v, want ENOENT, ENOTDIR or ELOOP", l, links[l], err)
		}
	}
}
