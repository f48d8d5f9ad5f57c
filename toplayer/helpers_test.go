package toplayer

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fixture is one test case's world:
//
//	base/w/x/root   the new root (the image's rw snapshot)
//	base/src        the top layer
//	base/outside    a directory the image's symlinks point at
//
// root sits three levels below base so that `etc -> ../../..` inside it
// lands on base, which the sentinel snapshot watches.
type fixture struct {
	base, root, src, outside string
	before                   map[string]string
	log                      []string // Options.Log lines of the last apply
}

func newFixture(t *testing.T, base string) *fixture {
	t.Helper()
	f := &fixture{
		base:    base,
		root:    filepath.Join(base, "w", "x", "root"),
		src:     filepath.Join(base, "src"),
		outside: filepath.Join(base, "outside"),
	}
	for _, d := range []string{f.root, f.src, f.outside} {
		mustMkdir(t, d, 0o755)
	}
	mustFile(t, filepath.Join(f.outside, "victim"), "victim\n", 0o644)
	mustFile(t, filepath.Join(f.outside, "passwd"), "root:x:0:0::/root:/bin/sh\n", 0o644)
	mustMkdir(t, filepath.Join(f.outside, "keep"), 0o755)
	mustFile(t, filepath.Join(f.outside, "keep", "file"), "keep\n", 0o600)
	return f
}

// apply runs Apply and checks the invariants every case shares: nothing
// outside the new root changed and no temporary file is left behind.
func (f *fixture) apply(t *testing.T) Summary {
	t.Helper()
	sum, err := f.applyErr(t)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return sum
}

func (f *fixture) applyErr(t *testing.T) (Summary, error) {
	t.Helper()
	f.before = f.snapshotOutside(t)
	var log []string
	sum, err := ApplyWith(f.root, f.src, Options{Log: func(format string, args ...any) {
		log = append(log, fmt.Sprintf(format, args...))
	}})
	for _, l := range log {
		t.Logf("apply: %s", l)
	}
	f.log = log
	f.assertOutsideUnchanged(t)
	f.assertNoTemps(t)
	return sum, err
}

// snapshotOutside records everything under base except the new root and
// the top layer: names, types, modes, owners, sizes, mtimes, link targets
// and content hashes. Atimes are left out: the snapshot itself reads files.
func (f *fixture) snapshotOutside(t *testing.T) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(f.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == f.root || p == f.src {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d mtime=%d", st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Nano())
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" sha=%x", sha256.Sum256(b))
		}
		snap[p] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", f.base, err)
	}
	return snap
}

func (f *fixture) assertOutsideUnchanged(t *testing.T) {
	t.Helper()
	after := f.snapshotOutside(t)
	var diffs []string
	for p, want := range f.before {
		if got, ok := after[p]; !ok {
			diffs = append(diffs, "removed "+p)
		} else if got != want {
			diffs = append(diffs, fmt.Sprintf("changed %s: %s => %s", p, want, got))
		}
	}
	for p := range after {
		if _, ok := f.before[p]; !ok {
			diffs = append(diffs, "created "+p)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("Apply changed things outside the new root:\n  %s", strings.Join(diffs, "\n  "))
	}
}

// assertNoTemps walks the new root with O_NOATIME, so that cases checking
// directory atimes can run after it.
func (f *fixture) assertNoTemps(t *testing.T) {
	t.Helper()
	var walk func(dir string)
	walk = func(dir string) {
		flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		fd, err := unix.Open(dir, flags|unix.O_NOATIME, 0)
		if err == unix.EPERM { // O_NOATIME needs ownership or CAP_FOWNER
			fd, err = unix.Open(dir, flags, 0)
		}
		if err != nil {
			return // not a directory, or unreadable to a non-root run
		}
		names, err := readNames(fd)
		unix.Close(fd)
		if err != nil {
			t.Errorf("list %s: %v", dir, err)
		}
		for _, n := range names {
			if strings.HasPrefix(n, ".dockroot-tmp") {
				t.Errorf("temporary file left behind: %s", filepath.Join(dir, n))
			}
			walk(filepath.Join(dir, n))
		}
	}
	walk(f.root)
}

func (f *fixture) r(rel string) string { return filepath.Join(f.root, rel) }
func (f *fixture) s(rel string) string { return filepath.Join(f.src, rel) }

// --- building trees ---

func mustMkdir(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mustFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func mustLink(t *testing.T, oldp, newp string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(newp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(oldp, newp); err != nil {
		t.Fatal(err)
	}
}

// chmodRaw sets mode bits os.Chmod would translate (setuid, setgid, sticky).
func chmodRaw(t *testing.T, p string, mode uint32) {
	t.Helper()
	if err := unix.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mustChown(t *testing.T, p string, uid, gid int) {
	t.Helper()
	if err := os.Lchown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
}

var (
	time1 = time.Date(2001, 2, 3, 4, 5, 6, 123456789, time.UTC)
	time2 = time.Date(2002, 3, 4, 5, 6, 7, 987654321, time.UTC)
)

// setTimesNoFollow sets atime and mtime of p itself, symlinks included.
func setTimesNoFollow(t *testing.T, p string, atime, mtime time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

// --- checking trees ---

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return st
}

func assertAbsent(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: want absent, got err=%v", p, err)
	}
}

func assertType(t *testing.T, p string, want uint32) unix.Stat_t {
	t.Helper()
	st := lstat(t, p)
	if got := st.Mode & unix.S_IFMT; got != want {
		t.Errorf("%s: type %#o, want %#o", p, got, want)
	}
	return st
}

func assertMode(t *testing.T, p string, want uint32) {
	t.Helper()
	if got := lstat(t, p).Mode & 0o7777; got != want {
		t.Errorf("%s: mode %#o, want %#o", p, got, want)
	}
}

func assertContent(t *testing.T, p, want string) {
	t.Helper()
	st := assertType(t, p, unix.S_IFREG)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, []byte(want)) {
		t.Errorf("%s: content %q, want %q", p, b, want)
	}
}

func assertLink(t *testing.T, p, want string) {
	t.Helper()
	assertType(t, p, unix.S_IFLNK)
	if got, err := os.Readlink(p); err != nil || got != want {
		t.Errorf("%s: link %q (%v), want %q", p, got, err, want)
	}
}

func assertTimes(t *testing.T, p string, atime, mtime time.Time) {
	t.Helper()
	st := lstat(t, p)
	if got := time.Unix(0, st.Mtim.Nano()); !got.Equal(mtime) {
		t.Errorf("%s: mtime %s, want %s", p, got.UTC(), mtime)
	}
	if got := time.Unix(0, st.Atim.Nano()); !got.Equal(atime) {
		t.Errorf("%s: atime %s, want %s", p, got.UTC(), atime)
	}
}

func assertOwner(t *testing.T, p string, uid, gid uint32) {
	t.Helper()
	st := lstat(t, p)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
}

func assertNames(t *testing.T, dir string, want ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, want)
	}
}

// --- gates ---

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs uid 0 to %s", why)
	}
}

// needUserXattr skips unless the filesystem under dir stores user.* xattrs
// (tmpfs before Linux 6.6 does not).
func needUserXattr(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, ".xattr-probe")
	mustFile(t, p, "", 0o644)
	defer os.Remove(p)
	if err := unix.Setxattr(p, "user.probe", []byte("1"), 0); err != nil {
		t.Skipf("filesystem under %s does not store user xattrs: %v", dir, err)
	}
}

func getXattrT(t *testing.T, p, attr string) []byte {
	t.Helper()
	v, err := getXattr(p, attr)
	if err != nil {
		t.Errorf("%s: xattr %s: %v", p, attr, err)
	}
	return v
}

// --- trees deeper than PATH_MAX ---

// deepComponents is a chain of directory names whose joined path is longer
// than PATH_MAX (4096): no path-string syscall can name what is below it,
// and os.MkdirAll cannot make it.
func deepComponents() []string {
	comps := make([]string, 24)
	for i := range comps {
		comps[i] = fmt.Sprintf("%02d", i) + strings.Repeat("d", 198)
	}
	return comps
}

// mkdirDeep makes the directories rel under dir one component at a time
// (mkdirat, openat) and returns an open descriptor of the last one, closed
// when the test ends.
func mkdirDeep(t *testing.T, dir string, rel []string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rel {
		if err := unix.Mkdirat(fd, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			t.Fatalf("mkdirat %s: %v", c, err)
		}
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("openat %s: %v", c, err)
		}
		fd = next
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// openDeep opens the existing directory rel under dir without following
// symlinks, for checks below PATH_MAX's reach.
func openDeep(t *testing.T, dir string, rel []string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd2, err := openDirPath(fd, rel)
	unix.Close(fd)
	if err != nil {
		t.Fatalf("open %s/<%d components>: %v", dir, len(rel), err)
	}
	t.Cleanup(func() { unix.Close(fd2) })
	return fd2
}

func fstatatT(t *testing.T, dirfd int, name string, wantType uint32) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatalf("fstatat %s: %v", name, err)
	}
	if got := st.Mode & unix.S_IFMT; got != wantType {
		t.Errorf("%s: type %#o, want %#o", name, got, wantType)
	}
	return st
}

func (f *fixture) assertLogged(t *testing.T, want string) {
	t.Helper()
	for _, l := range f.log {
		if l == want {
			return
		}
	}
	t.Errorf("log lacks %q; it has:\n  %s", want, strings.Join(f.log, "\n  "))
}
