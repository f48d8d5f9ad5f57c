package toplayer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openDirPath opens the directory at the path components rel under dirfd,
// one component at a time with O_NOFOLLOW, so a symlink anywhere on the
// way fails with ELOOP/ENOTDIR instead of being followed.
func openDirPath(dirfd int, rel []string) (int, error) {
	fd, err := unix.Openat(dirfd, ".", dirFlags, 0)
	if err != nil {
		return -1, err
	}
	for _, c := range rel {
		if c == "" || c == "." || c == ".." || strings.ContainsRune(c, '/') {
			unix.Close(fd)
			return -1, fmt.Errorf("path component %q: %w", c, unix.EINVAL)
		}
		next, err := unix.Openat(fd, c, dirFlags, 0)
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("open %s: %w", c, err)
		}
		fd = next
	}
	return fd, nil
}

// maxSymlinks is the kernel's limit on symlinks followed in one lookup
// (MAXSYMLINKS in include/linux/namei.h), as in securejoin.
const maxSymlinks = 40

// resolveDirAt resolves the symlink at the path components link under
// rootFd the way the kernel would after chroot into rootFd's directory,
// with the semantics of securejoin.Resolve: an absolute target restarts at
// the root, ".." never climbs above it, and at most maxSymlinks links are
// followed. link's parent components must name real directories (no
// symlinks among them). It returns an open descriptor of the directory the
// link names and that directory's components, which name real directories
// only. Every step is an *at call from a descriptor, with O_NOFOLLOW, so
// the walk never leaves the root and works at any depth. A link that
// names no directory (dangling, a file, a loop) gives an error wrapping
// ENOENT, ENOTDIR or ELOOP.
func resolveDirAt(rootFd int, link []string) (fd int, rel []string, err error) {
	rel = append([]string(nil), link[:len(link)-1]...)
	cur, err := openDirPath(rootFd, rel)
	if err != nil {
		return -1, nil, err
	}
	defer func() {
		if err != nil {
			unix.Close(cur)
		}
	}()
	reopen := func() error {
		next, err := openDirPath(rootFd, rel)
		if err != nil {
			return err
		}
		unix.Close(cur)
		cur = next
		return nil
	}
	pending := []string{link[len(link)-1]}
	links := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(rel) > 0 {
				rel = rel[:len(rel)-1]
				if err := reopen(); err != nil {
					return -1, nil, err
				}
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return -1, nil, fmt.Errorf("%s: %w", c, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			next, err := unix.Openat(cur, c, dirFlags, 0)
			if err != nil {
				return -1, nil, fmt.Errorf("open %s: %w", c, err)
			}
			unix.Close(cur)
			cur = next
			rel = append(rel, c)
		case unix.S_IFLNK:
			if links++; links > maxSymlinks {
				return -1, nil, fmt.Errorf("more than %d symlinks: %w", maxSymlinks, unix.ELOOP)
			}
			target, err := readlinkAt(cur, c, st.Size)
			if err != nil {
				return -1, nil, fmt.Errorf("readlink %s: %w", c, err)
			}
			if strings.HasPrefix(target, "/") {
				rel = rel[:0]
				if err := reopen(); err != nil {
					return -1, nil, err
				}
			}
			pending = append(strings.Split(target, "/"), pending...)
		default:
			return -1, nil, fmt.Errorf("%s: %w", c, unix.ENOTDIR)
		}
	}
	return cur, rel, nil
}

// readNames lists the open directory fd without consuming its offset for
// later readers.
func readNames(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// removeAllAt deletes name in dirfd and, if it is a directory, everything
// under it. It never follows a symlink: a symlink is unlinked, not its
// target. A name that does not exist is not an error.
func removeAllAt(dirfd int, name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unlink %s: %w", name, err)
		}
		return nil
	}
	cfd, err := unix.Openat(dirfd, name, dirFlags, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	err = clearDir(cfd)
	unix.Close(cfd)
	if err != nil {
		return fmt.Errorf("%s/%w", name, err)
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("rmdir %s: %w", name, err)
	}
	return nil
}

// clearDir removes every entry of the open directory fd.
func clearDir(fd int) error {
	names, err := readNames(fd)
	if err != nil {
		return fmt.Errorf("read directory: %w", err)
	}
	for _, n := range names {
		if err := removeAllAt(fd, n); err != nil {
			return err
		}
	}
	return nil
}

// dataCopier copies file contents, remembering which fast paths the pair of
// filesystems refused so the refusal costs one syscall per run, not per file.
type dataCopier struct {
	noClone, noCopyRange, noSendfile bool
	buf                              []byte
}

// unsupported reports errors that mean "this kernel or filesystem pair can't
// do that", after which a slower method is correct.
func unsupported(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM)
}

// copy writes the st.Size bytes of src into the empty file dst and says
// whether FICLONE shared them (btrfs metadata only, no data written).
// FICLONE shares the extents on btrfs (holes included). Otherwise a file
// that cannot have holes (as many blocks allocated as its size needs) is
// copied in one range; a sparse one by its data segments, found with
// SEEK_DATA/SEEK_HOLE, and ftruncate sets the size, so holes stay holes.
func (c *dataCopier) copy(dst, src int, st *unix.Stat_t) (n int64, cloned bool, err error) {
	size := st.Size
	if size == 0 {
		return 0, false, nil
	}
	if !c.noClone {
		err := unix.IoctlFileClone(dst, src)
		if err == nil {
			return size, true, nil
		}
		if !unsupported(err) {
			return 0, false, fmt.Errorf("FICLONE: %w", err)
		}
		// EINVAL can be specific to one file (e.g. unaligned tail on some
		// filesystems); the others mean the filesystem pair never will.
		if !errors.Is(err, unix.EINVAL) {
			c.noClone = true
		}
	}
	if st.Blocks*512 >= size {
		// Not sparse. (A compressed or inline file can look sparse by this
		// count; it then takes the segment path below, which is also right.)
		if err := c.copyRange(dst, src, 0, size); err != nil {
			return 0, false, err
		}
		return size, false, nil
	}
segments:
	for off := int64(0); off < size; {
		data, end := off, size
		next, err := unix.Seek(src, off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO):
			break segments // only a hole is left
		case err != nil:
			// No SEEK_DATA on this filesystem: copy everything from off.
		default:
			data = next
			if hole, err := unix.Seek(src, data, unix.SEEK_HOLE); err == nil && hole < size {
				end = hole
			}
		}
		if data >= size {
			break
		}
		if err := c.copyRange(dst, src, data, end-data); err != nil {
			return 0, false, err
		}
		off = end
	}
	if err := unix.Ftruncate(dst, size); err != nil {
		return 0, false, fmt.Errorf("truncate to %d: %w", size, err)
	}
	return size, false, nil
}

// sendfileMin is the size from which copyRange uses sendfile(2) rather
// than read and write (measured: 16 MiB files from tmpfs to btrfs copy ~10%
// faster, 4 KiB files ~5% slower).
const sendfileMin = 64 << 10

func (c *dataCopier) copyRange(dst, src int, off, n int64) error {
	roff, woff := off, off
	for n > 0 && !c.noCopyRange {
		chunk := n
		if chunk > 1<<30 {
			chunk = 1 << 30
		}
		got, err := unix.CopyFileRange(src, &roff, dst, &woff, int(chunk), 0)
		if err != nil {
			if unsupported(err) && roff == off {
				c.noCopyRange = true
				break
			}
			return fmt.Errorf("copy_file_range at %d: %w", roff, err)
		}
		if got == 0 {
			return fmt.Errorf("source shrank while copying, at offset %d: %w", roff, io.ErrUnexpectedEOF)
		}
		n -= int64(got)
	}
	// sendfile(2) copies in the kernel between any two filesystems
	// (copy_file_range refuses different ones since Linux 5.19), sparing
	// the copy through user memory; below sendfileMin its set-up costs
	// more than that copy. It writes at dst's file offset.
	useSendfile := n >= sendfileMin && !c.noSendfile
	if useSendfile {
		if _, err := unix.Seek(dst, woff, io.SeekStart); err != nil {
			return fmt.Errorf("seek to %d: %w", woff, err)
		}
	}
	for n > 0 && useSendfile && !c.noSendfile {
		chunk := n
		if chunk > 1<<30 {
			chunk = 1 << 30
		}
		start := roff
		got, err := unix.Sendfile(dst, src, &roff, int(chunk))
		if err != nil {
			if unsupported(err) && roff == start && start == off {
				c.noSendfile = true
				break
			}
			return fmt.Errorf("sendfile at %d: %w", start, err)
		}
		if got == 0 {
			return fmt.Errorf("source shrank while copying, at offset %d: %w", roff, io.ErrUnexpectedEOF)
		}
		woff += int64(got)
		n -= int64(got)
	}
	if c.buf == nil && n > 0 {
		c.buf = make([]byte, 1<<20)
	}
	for n > 0 {
		chunk := int64(len(c.buf))
		if chunk > n {
			chunk = n
		}
		got, err := unix.Pread(src, c.buf[:chunk], roff)
		if err != nil {
			return fmt.Errorf("read at %d: %w", roff, err)
		}
		if got == 0 {
			return fmt.Errorf("source shrank while copying, at offset %d: %w", roff, io.ErrUnexpectedEOF)
		}
		if _, err := writeFullAt(dst, c.buf[:got], woff); err != nil {
			return fmt.Errorf("write at %d: %w", woff, err)
		}
		roff += int64(got)
		woff += int64(got)
		n -= int64(got)
	}
	return nil
}

func writeFullAt(fd int, b []byte, off int64) (int, error) {
	total := 0
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err != nil {
			return total, err
		}
		b = b[n:]
		off += int64(n)
		total += n
	}
	return total, nil
}

// xattrBuf copies xattrs between open files with buffers reused from file
// to file: one flistxattr call tells that a file has none, which is what
// nearly every file in a top layer has.
type xattrBuf struct {
	names, val []byte
	attrs      []string
}

// list reads the xattr names of the open file fd into b and returns how
// many there are. A filesystem without xattrs has none.
func (b *xattrBuf) list(fd int) (int, error) {
	if b.names == nil {
		b.names = make([]byte, 1024)
	}
	b.attrs = b.attrs[:0]
	for {
		n, err := unix.Flistxattr(fd, b.names)
		if errors.Is(err, unix.ERANGE) {
			// Larger than the buffer: ask for the size, grow, list again.
			if n, err = unix.Flistxattr(fd, nil); err != nil {
				return 0, err
			}
			b.names = make([]byte, n+256)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		for _, s := range strings.Split(string(b.names[:n]), "\x00") {
			if s != "" {
				b.attrs = append(b.attrs, s)
			}
		}
		return len(b.attrs), nil
	}
}

// copy sets on dst every xattr list found on src, with src's value.
// Which namespaces are visible depends on the caller: trusted.* needs
// CAP_SYS_ADMIN, which the initramfs has.
func (b *xattrBuf) copy(src, dst int) error {
	if b.val == nil {
		b.val = make([]byte, 4096)
	}
	for _, attr := range b.attrs {
		n, err := unix.Fgetxattr(src, attr, b.val)
		if errors.Is(err, unix.ERANGE) {
			if n, err = unix.Fgetxattr(src, attr, nil); err == nil {
				b.val = make([]byte, n+256)
				n, err = unix.Fgetxattr(src, attr, b.val)
			}
		}
		if errors.Is(err, unix.ENODATA) {
			continue // removed since listing
		}
		if err != nil {
			return fmt.Errorf("read xattr %s: %w", attr, err)
		}
		if err := unix.Fsetxattr(dst, attr, b.val[:n], 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", attr, err)
		}
	}
	return nil
}

// futimens sets the access and modification times of the open file fd:
// utimensat(2) with a NULL path, as glibc's futimens does. (x/sys/unix
// has no futimens; its Futimes goes through /proc with microseconds.)
func futimens(fd int, atime, mtime unix.Timespec) error {
	ts := [2]unix.Timespec{atime, mtime}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// readlinkAt reads the target of the symlink name in dirfd; size is its
// lstat size, a hint (0 on some filesystems).
func readlinkAt(dirfd int, name string, size int64) (string, error) {
	buf := make([]byte, max(size+1, 128))
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// procDir is where Apply expects procfs. Symlinks and device nodes cannot
// be opened for f*xattr (a symlink is followed, a fifo open blocks, a
// device open talks to the driver), so their xattrs are reached by name
// through /proc/self/fd/N/NAME: the kernel follows the magic link to the
// open directory itself, so that path is short however deep the directory
// lies (a full path string fails past PATH_MAX with ENAMETOOLONG), and the
// l*xattr calls do not follow NAME.
const procDir = "/proc"

// procFdName names the entry name of the open directory dirfd under proc.
func procFdName(proc string, dirfd int, name string) string {
	return proc + "/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// procMounted reports whether proc is a mounted procfs.
func procMounted(proc string) bool {
	var s unix.Statfs_t
	return unix.Statfs(proc, &s) == nil && s.Type == unix.PROC_SUPER_MAGIC
}

// copyNodeXattrs copies every xattr of the entry name in the open source
// directory sfd to the entry of the same name in the open destination
// directory dfd, following neither. Which namespaces are visible depends
// on the caller: trusted.* needs CAP_SYS_ADMIN, which the initramfs has.
// A failure says so when the cause is that proc is not a mounted procfs.
func copyNodeXattrs(proc string, sfd, dfd int, name string) error {
	err := copyXattrsByPath(procFdName(proc, sfd, name), procFdName(proc, dfd, name))
	if err != nil && !procMounted(proc) {
		return fmt.Errorf("%w (%s is not a mounted procfs; xattrs of symlinks and device nodes are copied through %s/self/fd)", err, proc, proc)
	}
	return err
}

func copyXattrsByPath(src, dst string) error {
	names, err := listXattrs(src)
	if err != nil {
		return fmt.Errorf("list xattrs: %w", err)
	}
	for _, attr := range names {
		val, err := getXattr(src, attr)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since listing
		}
		if err != nil {
			return fmt.Errorf("read xattr %s: %w", attr, err)
		}
		if err := unix.Lsetxattr(dst, attr, val, 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", attr, err)
		}
	}
	return nil
}

func listXattrs(path string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(path, nil)
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil // the top layer's filesystem has none
		}
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew between the calls
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func getXattr(path, attr string) ([]byte, error) {
	for {
		n, err := unix.Lgetxattr(path, attr, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		if n == 0 {
			return buf, nil
		}
		n, err = unix.Lgetxattr(path, attr, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
