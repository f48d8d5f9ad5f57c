package securejoin

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Error is a lookup the kernel refuses: Path could not be resolved inside
// Root because Component (an in-root path, symlinks before it resolved)
// failed with Err. OpenInRoot and WalkInRoot return it.
type Error struct {
	Root string
	Path string // as the caller gave it
	// Component is where the walk stopped: the missing component
	// (ENOENT), the non-directory used as a directory (ENOTDIR), the
	// symlink over the limit (ELOOP). "" when only the kernel's errno is
	// known.
	Component string
	Err       error // an errno
}

func (e *Error) Error() string {
	if e.Component == "" {
		return fmt.Sprintf("resolve %s in %s: %v", e.Path, e.Root, e.Err)
	}
	return fmt.Sprintf("resolve %s in %s: %s: %v", e.Path, e.Root, e.Component, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// openat2 is unix.Openat2; tests replace it to cover kernels without it.
var openat2 = unix.Openat2

// OpenInRoot opens rel inside root the way the kernel's path walk does
// after chroot(root), which is how exec(2) will look it up once root is
// "/". Unlike Resolve, nothing is taken lexically: a missing component is
// ENOENT and a non-directory followed by more components (".." and "."
// included) or by a trailing "/" is ENOTDIR, before any later ".."
// applies; symlinks are followed inside root (absolute targets restart at
// root, ".." stops there), at most MaxSymlinks per lookup (ELOOP). The last
// component is followed unless flags hold O_NOFOLLOW.
//
// flags are open(2) flags for a lookup (O_PATH, O_RDONLY, O_NOFOLLOW, ...);
// nothing is created. The file's Name is its path under root, in the form
// Resolve returns. A failed lookup is an *Error naming the component.
//
// Where the kernel has openat2(2) (Linux 5.6), RESOLVE_IN_ROOT makes the
// kernel itself decide, and WalkInRoot only names the component of a
// refusal; elsewhere (ENOSYS) WalkInRoot does the lookup.
func OpenInRoot(root, rel string, flags int) (*os.File, error) {
	rootfd, err := openRoot(root, rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT}
	var fd int
	for try := 0; ; try++ {
		// EAGAIN: a rename raced with a ".." (openat2(2)); retry a few
		// times, then let the walk answer.
		fd, err = openat2(rootfd, rel, &how)
		if (err != unix.EAGAIN && err != unix.EINTR) || try == 8 {
			break
		}
	}
	switch {
	case err == nil:
		return os.NewFile(uintptr(fd), nameOf(root, rootfd, rel, flags, fd)), nil
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EAGAIN):
		return walkOpen(root, rootfd, rel, flags)
	}
	// The kernel refused; the walk says which component.
	f, werr := walkOpen(root, rootfd, rel, flags)
	if werr == nil {
		f.Close()
	}
	var e *Error
	if errors.As(werr, &e) && errors.Is(e.Err, err) {
		return nil, e
	}
	return nil, &Error{Root: root, Path: rel, Err: err}
}

// WalkInRoot is OpenInRoot without openat2(2): the same lookup, one
// component at a time from a file descriptor of root, as fs/namei.c does
// it. OpenInRoot uses it on kernels before 5.6; callers' tests use it to
// cover those kernels.
func WalkInRoot(root, rel string, flags int) (*os.File, error) {
	rootfd, err := openRoot(root, rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	return walkOpen(root, rootfd, rel, flags)
}

func openRoot(root, rel string) (int, error) {
	if root == "" {
		return -1, fmt.Errorf("resolve %s in root: empty root", rel)
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("resolve %s in %s: open the root: %w", rel, root, err)
	}
	return fd, nil
}

// nameOf names fd, which openat2 opened for rel: the walk's path when it
// agrees that rel resolves, else what /proc says, else rel taken
// lexically.
func nameOf(root string, rootfd int, rel string, flags, fd int) string {
	_, _, inRoot, release, err := walk(root, rootfd, rel, flags)
	if err == nil {
		release()
		return filepath.Join(filepath.Clean(root), inRoot)
	}
	r, rerr := os.Readlink("/proc/self/fd/" + strconv.Itoa(rootfd))
	p, perr := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if rerr == nil && perr == nil {
		if in, ok := strings.CutPrefix(p, r); ok && (in == "" || strings.HasPrefix(in, "/") || r == "/") {
			return filepath.Join(filepath.Clean(root), in)
		}
	}
	return filepath.Join(filepath.Clean(root), filepath.Clean("/"+rel))
}

func walkOpen(root string, rootfd int, rel string, flags int) (*os.File, error) {
	dir, last, inRoot, release, err := walk(root, rootfd, rel, flags)
	if err != nil {
		return nil, err
	}
	defer release()
	fd, err := unix.Openat(dir, last, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Root: root, Path: rel, Component: inRoot, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(filepath.Clean(root), inRoot)), nil
}

// walk resolves rel under rootfd component by component. It returns the
// directory that holds the result and the result's name there ("." for
// the directory itself), the result's in-root path, and release, which
// closes the directories walk opened (dir among them).
func walk(root string, rootfd int, rel string, flags int) (dir int, last, inRoot string, release func(), err error) {
	dirs := []int{rootfd} // dirs[i+1] is names[i]; rootfd is the caller's
	var names []string
	release = func() {
		for _, fd := range dirs[1:] {
			unix.Close(fd)
		}
		dirs = dirs[:1]
	}
	fail := func(comp string, errno error) (int, string, string, func(), error) {
		release()
		return -1, "", "", nil, &Error{Root: root, Path: rel, Component: comp, Err: errno}
	}
	if rel == "" {
		return fail("", unix.ENOENT) // open("") is ENOENT
	}
	pending := components(rel)
	links := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case ".":
			continue
		case "..":
			if n := len(dirs); n > 1 {
				unix.Close(dirs[n-1])
				dirs, names = dirs[:n-1], names[:n-2]
			}
			continue
		}
		top := dirs[len(dirs)-1]
		comp := "/" + path.Join(path.Join(names...), c)
		var st unix.Stat_t
		if err := unix.Fstatat(top, c, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail(comp, err)
		}
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK && !(len(pending) == 0 && flags&unix.O_NOFOLLOW != 0):
			// include/linux/namei.h MAXSYMLINKS; fs/namei.c refuses the
			// 41st with ELOOP.
			if links++; links > MaxSymlinks {
				return fail(comp, unix.ELOOP)
			}
			target, err := Readlinkat(top, c)
			if err != nil {
				return fail(comp, err)
			}
			if target == "" {
				return fail(comp, unix.ENOENT) // an empty symlink names nothing
			}
			if strings.HasPrefix(target, "/") {
				release()
				names = nil
			}
			pending = append(components(target), pending...)
		case len(pending) == 0:
			return top, c, comp, release, nil
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			// More follows (a name, ".", "..", or a trailing "/"): the
			// kernel needs a directory before it looks at it.
			return fail(comp, unix.ENOTDIR)
		default:
			fd, err := unix.Openat(top, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fail(comp, err)
			}
			dirs, names = append(dirs, fd), append(names, c)
		}
	}
	return dirs[len(dirs)-1], ".", "/" + path.Join(names...), release, nil
}

// components splits p into its names; a trailing "/" becomes a final ".",
// which asks for a directory as the kernel's trailing slash does.
func components(p string) []string {
	out := splitPath(p)
	if len(out) > 0 && strings.HasSuffix(p, "/") {
		out = append(out, ".")
	}
	return out
}

// Readlinkat reads the symlink name in dirfd whatever the length of its
// target (readlinkat(2) truncates silently to the buffer).
func Readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
