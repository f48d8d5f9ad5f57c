package toplayer

import (
	"errors"
	"fmt"
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
	a := &applier{newRoot: newRoot, src: src, srcEtc: filepath.Join(src, "etc"), proc: procDir, opt: opt, links: map[devIno][]string{}}
	err := a.run()
	a.sum.Duration = time.Since(start)
	return a.sum, err
}

type devIno struct{ dev, ino uint64 }

type applier struct {
	newRoot, src string
	srcEtc       string // the top layer's etc/, whose account databases are merged
	proc         string // where procfs is mounted: procDir
	opt          Options
	rootFd       int
	sum          Summary
	links        map[devIno][]string // first destination of each multiply-linked source inode, as path components
	data         dataCopier
	xattrs       xattrBuf
	dirents      []byte // getdents buffer, reused for every source directory
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
	sfd, err := unix.Open(a.src, dirFlags, 0)
	if err != nil {
		return &Error{Op: "read top layer", Src: a.src, Dst: a.newRoot, Err: err}
	}
	defer unix.Close(sfd)
	// The root itself is the caller's path and may be reached through a
	// symlink of the caller's own; everything below it is walked with
	// O_NOFOLLOW.
	fd, err := unix.Open(a.newRoot, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &Error{Op: "open new root", Dst: a.newRoot, Err: err}
	}
	defer unix.Close(fd)
	a.rootFd = fd
	return a.applyDir(fd, sfd, a.src, nil)
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

// entry is one top-layer entry being applied: its name in the open source
// directory sfd, to be written under the same name in the open destination
// directory dfd.
type entry struct {
	dfd, sfd int
	name     string
	srcPath  string   // for errors and logs
	rel      []string // destination path components under the new root
	st       unix.Stat_t
	accounts string // the account database (key of accountKinds) a regular file is merged as, "" to copy
}

// applyDir applies the entries of the open source directory sfd (srcDir,
// for messages) into the open destination directory dfd. Whiteouts go
// first: they delete from the image, never from the top layer's own
// entries of the same directory.
func (a *applier) applyDir(dfd, sfd int, srcDir string, rel []string) error {
	names, err := a.readDir(sfd)
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
			a.logf("skipping aufs metadata %s", ellipsize(filepath.Join(srcDir, name), msgPathMax))
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
	// The top layer's etc/ holds the account databases, which are merged
	// unless a replace marker says otherwise; markers are never copied.
	isEtc := srcDir == a.srcEtc
	var replace map[string]bool
	if isEtc {
		replace = a.replaceMarkers(names)
	}
	for _, name := range names {
		if strings.HasPrefix(name, whiteoutPrefix) || isEtc && strings.HasSuffix(name, replaceSuffix) {
			continue
		}
		e := &entry{dfd: dfd, sfd: sfd, name: name, srcPath: filepath.Join(srcDir, name), rel: with(rel, name)}
		if isEtc && accountKinds[name] != nil && !replace[name] {
			e.accounts = name
		}
		if err := a.applyEntry(e); err != nil {
			return err
		}
	}
	return nil
}

// readDir lists the open directory fd, which must be at offset 0.
func (a *applier) readDir(fd int) ([]string, error) { return readDirNames(fd, &a.dirents) }

// readDirNames lists the open directory fd, which must be at offset 0,
// with *buf as the getdents buffer (allocated on first use, then reused).
func readDirNames(fd int, buf *[]byte) ([]string, error) {
	if *buf == nil {
		*buf = make([]byte, 64<<10)
	}
	var names []string
	for {
		n, err := unix.Getdents(fd, *buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent((*buf)[:n], -1, names)
	}
}

var kindNames = map[uint32]string{
	unix.S_IFREG: "file", unix.S_IFDIR: "directory", unix.S_IFLNK: "symlink",
	unix.S_IFIFO: "fifo", unix.S_IFCHR: "character device", unix.S_IFBLK: "block device", unix.S_IFSOCK: "socket",
}

func (a *applier) fail(e *entry, op string, err error) error {
	return &Error{Op: op, Src: e.srcPath, Dst: a.dstPath(e.rel), Err: err}
}

func (a *applier) applyEntry(e *entry) error {
	if err := unix.Fstatat(e.sfd, e.name, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return a.fail(e, "stat", err)
	}
	switch e.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return a.copyDir(e)
	case unix.S_IFREG:
		if e.accounts != "" {
			return a.mergeAccountsFile(e, e.accounts)
		}
		return a.copyFile(e)
	case unix.S_IFLNK:
		return a.copySymlink(e)
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		return a.copySpecial(e)
	case unix.S_IFSOCK:
		// A socket is only meaningful to the process that bound it; the
		// image's services create their own at run time.
		note := e.srcPath + ": socket, not copied"
		a.sum.Skipped = append(a.sum.Skipped, note)
		a.logf("skipping %s: socket, not copied", ellipsize(e.srcPath, msgPathMax))
		return nil
	default:
		return a.fail(e, "copy", fmt.Errorf("unknown file type %#o", e.st.Mode&unix.S_IFMT))
	}
}

// createReplacing runs create, which makes name in dfd and fails with
// EEXIST if the name is taken. Whatever holds the name is then removed and
// create runs again: a non-directory is unlinked, so a symlink is never
// followed and a file hard-linked elsewhere in the image keeps its other
// names and its content; a directory is removed with its tree, since the
// top layer wins type changes.
func (a *applier) createReplacing(e *entry, create func() error) error {
	for tries := 0; ; tries++ {
		err := create()
		if !errors.Is(err, unix.EEXIST) || tries == 3 {
			return err
		}
		err = unix.Unlinkat(e.dfd, e.name, 0)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
		case errors.Is(err, unix.EISDIR): // Linux's unlink(2) on a directory
			a.logf("replacing directory %s with the top layer's %s", ellipsize(a.dstPath(e.rel), msgPathMax), kindNames[e.st.Mode&unix.S_IFMT])
			if err := removeAllAt(e.dfd, e.name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unlink %s: %w", e.name, err)
		}
	}
}

func (a *applier) copyDir(e *entry) error {
	err := unix.Mkdirat(e.dfd, e.name, 0o700)
	if errors.Is(err, unix.EEXIST) {
		var dst unix.Stat_t
		err = unix.Fstatat(e.dfd, e.name, &dst, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case err != nil:
		case dst.Mode&unix.S_IFMT == unix.S_IFDIR:
			// Two directories merge.
		case dst.Mode&unix.S_IFMT == unix.S_IFLNK && a.mergeThroughSymlink(e, &err):
			return err
		default:
			a.logf("replacing %s %s with the top layer's directory", kindNames[dst.Mode&unix.S_IFMT], ellipsize(a.dstPath(e.rel), msgPathMax))
			if err = removeAllAt(e.dfd, e.name); err == nil {
				err = unix.Mkdirat(e.dfd, e.name, 0o700)
			}
		}
	}
	// A new directory stays 0700 until its contents are in: nobody sees a
	// half-filled directory with its final permissions.
	if err != nil {
		return a.fail(e, "mkdir", err)
	}
	cfd, err := unix.Openat(e.dfd, e.name, dirFlags, 0)
	if err != nil {
		return a.fail(e, "open directory", err)
	}
	defer unix.Close(cfd)
	sfd, err := unix.Openat(e.sfd, e.name, dirFlags, 0)
	if err != nil {
		return a.fail(e, "read directory", err)
	}
	defer unix.Close(sfd)
	if err := a.applyDir(cfd, sfd, e.srcPath, e.rel); err != nil {
		return err
	}
	// Metadata after the contents: a 0555 directory would refuse them, and
	// adding entries changes the directory's mtime.
	if err := a.setMeta(cfd, sfd, &e.st); err != nil {
		return a.fail(e, err.op, err.err)
	}
	a.sum.Dirs++
	return nil
}

// mergeThroughSymlink merges the top layer's directory e into the
// directory that the image's symlink of the same name resolves to inside
// the new root, when it resolves to one, and says whether it did; *err is
// then the outcome. Merged /usr images (Debian since 12, Fedora, Arch)
// have lib -> usr/lib, bin -> usr/bin, sbin -> usr/sbin: replacing lib with
// a directory holding only lib/firmware would take /lib/ld-linux*.so and
// every library with it. The symlink is kept, and the target directory
// keeps its own owner, mode, xattrs and times: it is the image's, and the
// top layer only names it through the link. A top-layer directory with an
// opaque marker is not merged: it says the directory holds only its own
// entries, and emptying the target (the whole of usr/lib, or the new root
// for lib -> /) is never what that meant; the symlink is replaced, as a
// Docker layer would do.
func (a *applier) mergeThroughSymlink(e *entry, err *error) bool {
	fd, rel, rerr := resolveDirAt(a.rootFd, e.rel)
	switch {
	case errors.Is(rerr, unix.ENOENT), errors.Is(rerr, unix.ENOTDIR), errors.Is(rerr, unix.ELOOP):
		return false // dangling, a non-directory or a loop: replaced
	case rerr != nil:
		*err = a.fail(e, "resolve symlink", rerr)
		return true
	}
	defer unix.Close(fd)
	sfd, serr := unix.Openat(e.sfd, e.name, dirFlags, 0)
	if serr != nil {
		*err = a.fail(e, "read directory", serr)
		return true
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if unix.Fstatat(sfd, opaqueMarker, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		return false
	}
	srcRel, rerr := filepath.Rel(a.src, e.srcPath)
	if rerr != nil {
		srcRel = e.srcPath
	}
	target := filepath.Join(rel...)
	if target == "" {
		target = "/"
	}
	a.logf("merging top layer %s/ into %s: %s is a symlink in the image",
		ellipsize(srcRel, msgPathMax), ellipsize(target, msgPathMax), ellipsize(filepath.Join(e.rel...), msgPathMax))
	// Entries below record where they really are (hard links are made
	// from these components with O_NOFOLLOW at every step).
	e.rel = rel
	if *err = a.applyDir(fd, sfd, e.srcPath, rel); *err == nil {
		a.sum.Dirs++
	}
	return true
}

// copyFile writes the regular file e as a new inode under its name. The
// top layer is applied into a layer that is not live yet (Layers.Prepare's
// pending layer, discarded by the next boot if this one never commits it),
// so the file is created in place rather than under a temporary name and
// renamed: a crash mid-copy leaves only a layer nobody boots. What matters
// is that nothing is written through what the image had under the name,
// which createReplacing ensures.
func (a *applier) copyFile(e *entry) error {
	st := &e.st
	key := devIno{uint64(st.Dev), uint64(st.Ino)}
	if uint64(st.Nlink) > 1 {
		if first, ok := a.links[key]; ok {
			err := a.linkTo(e, first)
			if err == nil {
				a.sum.HardLinks++
				return nil
			}
			if !errors.Is(err, unix.ENOENT) {
				return a.fail(e, "link", fmt.Errorf("to %s: %w", a.dstPath(first), err))
			}
			a.logf("hard link target %s vanished; copying %s instead", ellipsize(a.dstPath(first), msgPathMax), ellipsize(e.srcPath, msgPathMax))
		}
	}

	in, err := unix.Openat(e.sfd, e.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return a.fail(e, "open", err)
	}
	defer unix.Close(in)
	nx, err := a.xattrs.list(in)
	if err != nil {
		return a.fail(e, "list xattrs", err)
	}
	// The final permission bits at once, so that most files need no
	// chmod (setMetaListed checks what the kernel made of them: umask).
	// Not setuid or setgid: a set-ID file exists only once its content,
	// owner and capabilities are final. Owner write while xattrs are set:
	// user.* needs it without CAP_FOWNER.
	mode := st.Mode & 0o777
	if nx > 0 {
		mode |= 0o200
	}
	fd := -1
	err = a.createReplacing(e, func() (err error) {
		fd, err = unix.Openat(e.dfd, e.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode))
		return err
	})
	if err != nil {
		return a.fail(e, "create", err)
	}
	done := false
	defer func() {
		if !done {
			// Never leave a half-written file under the final name.
			unix.Close(fd)
			_ = unix.Unlinkat(e.dfd, e.name, 0) // best effort; the error being returned matters more
		}
	}()
	n, cloned, err := a.data.copy(fd, in, st)
	if err != nil {
		return a.fail(e, "copy data", err)
	}
	if err := a.setMetaListed(fd, in, st, nx); err != nil {
		return a.fail(e, err.op, err.err)
	}
	done = true
	if err := unix.Close(fd); err != nil {
		_ = unix.Unlinkat(e.dfd, e.name, 0)
		return a.fail(e, "close", err)
	}
	if uint64(st.Nlink) > 1 {
		a.links[key] = e.rel
	}
	a.sum.Files++
	a.sum.Bytes += n
	if !cloned {
		a.sum.Copied += n
	}
	return nil
}

// linkTo makes e's name another hard link to the file already written at
// first (path components under the new root).
func (a *applier) linkTo(e *entry, first []string) error {
	pfd, err := openDirPath(a.rootFd, first[:len(first)-1])
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return a.createReplacing(e, func() error { return unix.Linkat(pfd, first[len(first)-1], e.dfd, e.name, 0) })
}

func (a *applier) copySymlink(e *entry) error {
	linkTarget, err := readlinkAt(e.sfd, e.name, e.st.Size)
	if err != nil {
		return a.fail(e, "readlink", err)
	}
	if err := a.createReplacing(e, func() error { return unix.Symlinkat(linkTarget, e.dfd, e.name) }); err != nil {
		return a.fail(e, "symlink", err)
	}
	if err := a.finishNode(e, false); err != nil {
		return a.fail(e, err.op, err.err)
	}
	a.sum.Symlinks++
	return nil
}

func (a *applier) copySpecial(e *entry) error {
	err := a.createReplacing(e, func() error {
		return unix.Mknodat(e.dfd, e.name, e.st.Mode&unix.S_IFMT|0o600, int(e.st.Rdev))
	})
	if err != nil {
		return a.fail(e, "mknod", err)
	}
	if err := a.finishNode(e, true); err != nil {
		return a.fail(e, err.op, err.err)
	}
	a.sum.Specials++
	return nil
}

// finishNode sets owner, xattrs, mode and times on a symlink or special
// node this run just created under e's name. Neither can be opened for
// fchown/fsetxattr without side effects (a fifo open blocks, a device open
// talks to the driver), so they are addressed by name in e.dfd. On failure
// the node is removed, so no half-made entry is left.
func (a *applier) finishNode(e *entry, chmod bool) *opError {
	st := &e.st
	fail := func(op string, err error) *opError {
		_ = unix.Unlinkat(e.dfd, e.name, 0)
		return &opError{op, err}
	}
	if err := unix.Fchownat(e.dfd, e.name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail("chown", err)
	}
	if err := copyNodeXattrs(a.proc, e.sfd, e.dfd, e.name); err != nil {
		return fail("set xattrs", err)
	}
	if chmod {
		// After chown, which clears setuid/setgid. The node is one this
		// run just made, so following it is harmless.
		if err := unix.Fchmodat(e.dfd, e.name, st.Mode&0o7777, 0); err != nil {
			return fail("chmod", err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(e.dfd, e.name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail("set times", err)
	}
	return nil
}

type opError struct {
	op  string
	err error
}

// setMeta gives the open regular file or directory fd the owner, xattrs,
// mode and times of the open source src (whose stat is st).
func (a *applier) setMeta(fd, src int, st *unix.Stat_t) *opError {
	nx, err := a.xattrs.list(src)
	if err != nil {
		return &opError{"list xattrs", err}
	}
	return a.setMetaListed(fd, src, st, nx)
}

// setMetaListed is setMeta once a.xattrs holds the nx xattr names of src.
// The order is the only one that keeps them all: chown clears setuid,
// setgid and security.capability, so it goes first; xattrs before chmod,
// because setting user.* needs write permission on the inode for a caller
// without CAP_FOWNER; chmod, then times last. Each step runs only when the
// inode differs from the source, as an fstat of it tells: on btrfs every
// chown or chmod is a metadata update in the transaction, and most files
// are created with the right owner and mode already.
func (a *applier) setMetaListed(fd, src int, st *unix.Stat_t, nx int) *opError {
	var cur unix.Stat_t
	if err := unix.Fstat(fd, &cur); err != nil {
		return &opError{"stat", err}
	}
	chowned := false
	if cur.Uid != st.Uid || cur.Gid != st.Gid {
		if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
			return &opError{"chown", fmt.Errorf("to %d:%d: %w", st.Uid, st.Gid, err)}
		}
		chowned = true
	}
	if nx > 0 {
		if err := a.xattrs.copy(src, fd); err != nil {
			return &opError{"set xattrs", err}
		}
	}
	// A system.posix_acl_access xattr rewrites the mode's group bits, and
	// chown may have cleared setuid/setgid: chmod after either.
	if chowned || nx > 0 || cur.Mode&0o7777 != st.Mode&0o7777 {
		if err := unix.Fchmod(fd, st.Mode&0o7777); err != nil {
			return &opError{"chmod", fmt.Errorf("to %#o: %w", st.Mode&0o7777, err)}
		}
	}
	if err := futimens(fd, st.Atim, st.Mtim); err != nil {
		return &opError{"set times", err}
	}
	return nil
}
