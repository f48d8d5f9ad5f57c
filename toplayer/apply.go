package toplayer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh." // aufs metadata (plnk, aufs, orph): never copied
	opaqueMarker   = ".wh..wh..opq"

	dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
)

// ApplyWith is Apply with options.
func ApplyWith(newRoot, src string, opt Options) (Summary, error) {
	start := time.Now()
	a := &applier{newRoot: newRoot, src: src, opt: opt, links: map[devIno][]string{}}
	err := a.run()
	a.sum.Duration = time.Since(start)
	return a.sum, err
}

type devIno struct{ dev, ino uint64 }

type applier struct {
	newRoot, src string
	opt          Options
	rootFd       int
	sum          Summary
	links        map[devIno][]string // first destination of each multiply-linked source inode, as path components
	data         dataCopier
	tmpSeq       int
}

func (a *applier) logf(format string, args ...any) {
	if a.opt.Log != nil {
		a.opt.Log(format, args...)
	}
}

func (a *applier) run() error {
	var st unix.Stat_t
	if err := unix.Lstat(a.src, &st); err != nil {
		return &Error{Op: "read top layer", Src: a.src, Dst: a.newRoot, Err: fmt.Errorf("%w; check that toplayer_path= names a directory on the top-layer filesystem", err)}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return &Error{Op: "read top layer", Src: a.src, Dst: a.newRoot, Err: fmt.Errorf("not a directory: %w; toplayer_path= must name a directory", unix.ENOTDIR)}
	}
	// The root itself is the caller's path and may be reached through a
	// symlink of the caller's own; everything below it is walked with
	// O_NOFOLLOW.
	fd, err := unix.Open(a.newRoot, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &Error{Op: "open new root", Dst: a.newRoot, Err: err}
	}
	defer unix.Close(fd)
	a.rootFd = fd
	return a.applyDir(fd, a.src, nil)
}

// dstPath is the destination path for errors and logs.
func (a *applier) dstPath(rel []string) string {
	return filepath.Join(append([]string{a.newRoot}, rel...)...)
}

func with(rel []string, name string) []string {
	out := make([]string, len(rel), len(rel)+1)
	copy(out, rel)
	return append(out, name)
}

// applyDir applies the entries of srcDir into the open destination
// directory dfd. Whiteouts go first: they delete from the image, never from
// the top layer's own entries of the same directory.
func (a *applier) applyDir(dfd int, srcDir string, rel []string) error {
	f, err := os.Open(srcDir)
	if err != nil {
		return &Error{Op: "read directory", Src: srcDir, Dst: a.dstPath(rel), Err: err}
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return &Error{Op: "read directory", Src: srcDir, Dst: a.dstPath(rel), Err: err}
	}
	sort.Strings(names)

	for _, name := range names {
		if name == opaqueMarker {
			if len(rel) == 0 {
				return &Error{Op: "opaque whiteout", Src: filepath.Join(srcDir, name), Dst: a.newRoot,
					Err: errors.New("refusing to empty the whole new root; remove .wh..wh..opq from the top layer's root")}
			}
			if err := clearDir(dfd); err != nil {
				return &Error{Op: "opaque whiteout", Src: filepath.Join(srcDir, name), Dst: a.dstPath(rel), Err: err}
			}
			a.sum.Whiteouts++
		}
	}
	for _, name := range names {
		switch {
		case name == opaqueMarker:
		case strings.HasPrefix(name, whiteoutMeta):
			a.logf("skipping aufs metadata %s", filepath.Join(srcDir, name))
		case strings.HasPrefix(name, whiteoutPrefix):
			target := strings.TrimPrefix(name, whiteoutPrefix)
			if target == "" || target == "." || target == ".." {
				return &Error{Op: "whiteout", Src: filepath.Join(srcDir, name), Dst: a.dstPath(rel),
					Err: fmt.Errorf("whiteout names %q, which is not an entry; rename or remove it", target)}
			}
			if err := removeAllAt(dfd, target); err != nil {
				return &Error{Op: "whiteout", Src: filepath.Join(srcDir, name), Dst: a.dstPath(with(rel, target)), Err: err}
			}
			a.sum.Whiteouts++
		}
	}
	for _, name := range names {
		if strings.HasPrefix(name, whiteoutPrefix) {
			continue
		}
		if err := a.applyEntry(dfd, filepath.Join(srcDir, name), with(rel, name)); err != nil {
			return err
		}
	}
	return nil
}

// target is what the destination holds under the name being applied.
type target struct {
	exists bool
	isDir  bool
	kind   string // for logs: "file", "symlink", "fifo", ...
}

var kindNames = map[uint32]string{
	unix.S_IFREG: "file", unix.S_IFDIR: "directory", unix.S_IFLNK: "symlink",
	unix.S_IFIFO: "fifo", unix.S_IFCHR: "character device", unix.S_IFBLK: "block device", unix.S_IFSOCK: "socket",
}

func lstatAt(dfd int, name string) (target, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return target{}, nil
	}
	if err != nil {
		return target{}, err
	}
	t := st.Mode & unix.S_IFMT
	return target{exists: true, isDir: t == unix.S_IFDIR, kind: kindNames[t]}, nil
}

func (a *applier) applyEntry(dfd int, srcPath string, rel []string) error {
	name := rel[len(rel)-1]
	var st unix.Stat_t
	if err := unix.Lstat(srcPath, &st); err != nil {
		return &Error{Op: "stat", Src: srcPath, Dst: a.dstPath(rel), Err: err}
	}
	dst, err := lstatAt(dfd, name)
	if err != nil {
		return &Error{Op: "stat", Src: srcPath, Dst: a.dstPath(rel), Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return a.copyDir(dfd, srcPath, rel, &st, dst)
	case unix.S_IFREG:
		return a.copyFile(dfd, srcPath, rel, &st, dst)
	case unix.S_IFLNK:
		return a.copySymlink(dfd, srcPath, rel, &st, dst)
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		return a.copySpecial(dfd, srcPath, rel, &st, dst)
	case unix.S_IFSOCK:
		// A socket is only meaningful to the process that bound it; the
		// image's services create their own at run time.
		note := srcPath + ": socket, not copied"
		a.sum.Skipped = append(a.sum.Skipped, note)
		a.logf("skipping %s", note)
		return nil
	default:
		return &Error{Op: "copy", Src: srcPath, Dst: a.dstPath(rel), Err: fmt.Errorf("unknown file type %#o", st.Mode&unix.S_IFMT)}
	}
}

func (a *applier) copyDir(dfd int, srcPath string, rel []string, st *unix.Stat_t, dst target) error {
	name := rel[len(rel)-1]
	fail := func(op string, err error) error { return &Error{Op: op, Src: srcPath, Dst: a.dstPath(rel), Err: err} }
	if !dst.isDir {
		if dst.exists {
			a.logf("replacing %s %s with the top layer's directory", dst.kind, a.dstPath(rel))
			if err := removeAllAt(dfd, name); err != nil {
				return fail("remove", err)
			}
		}
		// 0700 until the contents are in: nobody sees a half-filled
		// directory with its final permissions.
		if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
			return fail("mkdir", err)
		}
	}
	cfd, err := unix.Openat(dfd, name, dirFlags, 0)
	if err != nil {
		return fail("open directory", err)
	}
	defer unix.Close(cfd)
	if err := a.applyDir(cfd, srcPath, rel); err != nil {
		return err
	}
	// Metadata after the contents: a 0555 directory would refuse them, and
	// adding entries changes the directory's mtime.
	if err := a.setOwnerModeXattrs(cfd, srcPath, st); err != nil {
		return fail(err.op, err.err)
	}
	if err := setTimes(dfd, name, st); err != nil {
		return fail("set times", err)
	}
	a.sum.Dirs++
	return nil
}

func (a *applier) copyFile(dfd int, srcPath string, rel []string, st *unix.Stat_t, dst target) error {
	name := rel[len(rel)-1]
	fail := func(op string, err error) error { return &Error{Op: op, Src: srcPath, Dst: a.dstPath(rel), Err: err} }
	key := devIno{uint64(st.Dev), uint64(st.Ino)}
	if uint64(st.Nlink) > 1 {
		if first, ok := a.links[key]; ok {
			err := a.linkTo(dfd, name, first, dst)
			if err == nil {
				a.sum.HardLinks++
				return nil
			}
			if !errors.Is(err, unix.ENOENT) {
				return fail("link to "+a.dstPath(first), err)
			}
			a.logf("hard link target %s vanished; copying %s instead", a.dstPath(first), srcPath)
		}
	}

	var fd int
	tmp, err := a.withTmp(func(tmp string) (err error) {
		fd, err = unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return fail("create", err)
	}
	done := false
	defer func() {
		if !done {
			unix.Close(fd)
			_ = unix.Unlinkat(dfd, tmp, 0) // best effort; the error being returned matters more
		}
	}()
	in, err := os.OpenFile(srcPath, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fail("open", err)
	}
	n, err := a.data.copy(fd, int(in.Fd()), st.Size)
	in.Close()
	if err != nil {
		return fail("copy data", err)
	}
	if err := a.setOwnerModeXattrs(fd, srcPath, st); err != nil {
		return fail(err.op, err.err)
	}
	done = true
	if err := unix.Close(fd); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fail("close", err)
	}
	if err := setTimes(dfd, tmp, st); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fail("set times", err)
	}
	if err := replaceWith(dfd, tmp, name, dst); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fail("rename into place", err)
	}
	if uint64(st.Nlink) > 1 {
		a.links[key] = rel
	}
	a.sum.Files++
	a.sum.Bytes += n
	return nil
}

// linkTo makes name in dfd another hard link to the file already written at
// first (path components under the new root).
func (a *applier) linkTo(dfd int, name string, first []string, dst target) error {
	pfd, err := openDirPath(a.rootFd, first[:len(first)-1])
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	tmp, err := a.withTmp(func(tmp string) error { return unix.Linkat(pfd, first[len(first)-1], dfd, tmp, 0) })
	if err != nil {
		return err
	}
	if err := replaceWith(dfd, tmp, name, dst); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return err
	}
	return nil
}

func (a *applier) copySymlink(dfd int, srcPath string, rel []string, st *unix.Stat_t, dst target) error {
	name := rel[len(rel)-1]
	fail := func(op string, err error) error { return &Error{Op: op, Src: srcPath, Dst: a.dstPath(rel), Err: err} }
	linkTarget, err := os.Readlink(srcPath)
	if err != nil {
		return fail("readlink", err)
	}
	tmp, err := a.withTmp(func(tmp string) error { return unix.Symlinkat(linkTarget, dfd, tmp) })
	if err != nil {
		return fail("symlink", err)
	}
	if err := a.finishNode(dfd, tmp, name, srcPath, st, dst, false); err != nil {
		return fail(err.op, err.err)
	}
	a.sum.Symlinks++
	return nil
}

func (a *applier) copySpecial(dfd int, srcPath string, rel []string, st *unix.Stat_t, dst target) error {
	name := rel[len(rel)-1]
	fail := func(op string, err error) error { return &Error{Op: op, Src: srcPath, Dst: a.dstPath(rel), Err: err} }
	tmp, err := a.withTmp(func(tmp string) error { return unix.Mknodat(dfd, tmp, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)) })
	if err != nil {
		return fail("mknod", err)
	}
	if err := a.finishNode(dfd, tmp, name, srcPath, st, dst, true); err != nil {
		return fail(err.op, err.err)
	}
	a.sum.Specials++
	return nil
}

// finishNode sets owner, xattrs, mode and times on a symlink or special
// node created as tmp, then renames it over name. Neither can be opened for
// fchown/fsetxattr without side effects (a fifo open blocks, a device open
// talks to the driver), so they are addressed by name in dfd.
func (a *applier) finishNode(dfd int, tmp, name, srcPath string, st *unix.Stat_t, dst target, chmod bool) *opError {
	fail := func(op string, err error) *opError {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return &opError{op, err}
	}
	if err := unix.Fchownat(dfd, tmp, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail("chown", err)
	}
	if err := copyXattrs(srcPath, func(attr string, val []byte) error {
		// lsetxattr does not follow the last component; /proc/self/fd/N
		// pins the directory we hold open.
		return unix.Lsetxattr(fmt.Sprintf("/proc/self/fd/%d/%s", dfd, tmp), attr, val, 0)
	}); err != nil {
		return fail("set xattrs", fmt.Errorf("%w (needs /proc mounted)", err))
	}
	if chmod {
		// After chown, which clears setuid/setgid. tmp is a node this run
		// just made, so following it is harmless.
		if err := unix.Fchmodat(dfd, tmp, st.Mode&0o7777, 0); err != nil {
			return fail("chmod", err)
		}
	}
	if err := setTimes(dfd, tmp, st); err != nil {
		return fail("set times", err)
	}
	if err := replaceWith(dfd, tmp, name, dst); err != nil {
		return fail("rename into place", err)
	}
	return nil
}

type opError struct {
	op  string
	err error
}

// setOwnerModeXattrs applies the source's owner, xattrs and mode to an open
// regular file or directory, in the only order that keeps them all:
// chown clears setuid/setgid and security.capability, so it goes first;
// xattrs before chmod, because setting user.* needs write permission on the
// inode for a caller without CAP_FOWNER; chmod last.
func (a *applier) setOwnerModeXattrs(fd int, srcPath string, st *unix.Stat_t) *opError {
	if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
		return &opError{"chown", fmt.Errorf("to %d:%d: %w", st.Uid, st.Gid, err)}
	}
	if err := copyXattrs(srcPath, func(attr string, val []byte) error {
		return unix.Fsetxattr(fd, attr, val, 0)
	}); err != nil {
		return &opError{"set xattrs", err}
	}
	if err := unix.Fchmod(fd, st.Mode&0o7777); err != nil {
		return &opError{"chmod", fmt.Errorf("to %#o: %w", st.Mode&0o7777, err)}
	}
	return nil
}

func setTimes(dfd int, name string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// replaceWith renames tmp over name. rename(2) replaces any non-directory
// atomically and never follows a symlink at the destination; a directory
// in the way is removed first, since the top layer wins type changes.
func replaceWith(dfd int, tmp, name string, dst target) error {
	if dst.isDir {
		if err := removeAllAt(dfd, name); err != nil {
			return err
		}
	}
	return unix.Renameat(dfd, tmp, dfd, name)
}

// withTmp calls create with fresh temporary names until one is free: the
// image could hold a leftover of the same name (our PID is 1 at boot).
func (a *applier) withTmp(create func(tmp string) error) (string, error) {
	for tries := 0; ; tries++ {
		a.tmpSeq++
		tmp := fmt.Sprintf(".dockroot-tmp.%d.%d", os.Getpid(), a.tmpSeq)
		err := create(tmp)
		if errors.Is(err, unix.EEXIST) && tries < 100 {
			continue
		}
		return tmp, err
	}
}
