package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/internal/securejoin"
	"golang.org/x/sys/unix"
)

// tmpSuffix marks a file being written into the top layer; renamed over
// its final name once complete.
const tmpSuffix = ".dockroot-capture-tmp"

// TargetError is something in the top-layer directory that Capture will
// not write through or over: a symlink or non-directory where a
// directory belongs, a directory where a file belongs.
type TargetError struct {
	Path   string // full path in the top-layer directory
	Reason string
}

func (e *TargetError) Error() string { return e.Path + ": " + e.Reason }

// target is the top-layer directory.
type target struct{ dir string }

// openParent opens the directory holding rel in the target by file
// descriptor, one component at a time with O_NOFOLLOW. Missing
// directories are made when mk is set (with the source directory's
// owner and mode, from meta); without mk a missing one returns -1, nil.
func (t *target) openParent(rel string, mk bool, meta func(rel string) (*unix.Stat_t, error)) (int, error) {
	if mk {
		if err := os.MkdirAll(t.dir, 0o755); err != nil {
			return -1, fmt.Errorf("make the top-layer directory: %w", err)
		}
	}
	// The top-layer directory is the caller's path, which may be reached
	// through the caller's own symlinks; nothing below it is followed.
	fd, err := unix.Open(t.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) && !mk {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("open the top-layer directory %s: %w", t.dir, err)
	}
	comps := strings.Split(rel, "/")
	for i, c := range comps[:len(comps)-1] {
		sub := strings.Join(comps[:i+1], "/")
		full := filepath.Join(t.dir, sub)
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && mk {
			next, err = mkdirLike(fd, c, full, sub, meta)
		}
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.ENOENT) && !mk:
			return -1, nil
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
			return -1, &TargetError{Path: full, Reason: "not a directory (a symlink?): a top layer's directories must be directories, and nothing is written through a symlink; move it away"}
		case err != nil:
			return -1, fmt.Errorf("open %s: %w", full, err)
		}
		fd = next
	}
	return fd, nil
}

// mkdirLike makes the directory name in dirfd with the owner and mode of
// the source's directory sub, and opens it. The top layer's directory
// metadata wins over the image's at boot, so a directory made 0700 here
// would make the machine's etc 0700.
func mkdirLike(dirfd int, name, full, sub string, meta func(string) (*unix.Stat_t, error)) (int, error) {
	st, err := meta(sub)
	if err != nil {
		return -1, err
	}
	if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
		return -1, fmt.Errorf("mkdir %s: %w", full, err)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", full, err)
	}
	if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("chown %s to %d:%d: %w", full, st.Uid, st.Gid, err)
	}
	if err := unix.Fchmod(fd, st.Mode&0o7777); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("chmod %s %#o: %w", full, st.Mode&0o7777, err)
	}
	return fd, nil
}

// compare says what writing e would do to the target: New, Replaced or
// Unchanged. Content, link target, owner and mode count; times do not.
func (t *target) compare(e *entry) (Action, error) {
	dfd, err := t.openParent(e.rel, false, nil)
	if err != nil || dfd < 0 {
		return New, err
	}
	defer unix.Close(dfd)
	name := filepath.Base(e.rel)
	full := filepath.Join(t.dir, e.rel)
	var st unix.Stat_t
	err = unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return New, nil
	case err != nil:
		return "", fmt.Errorf("stat %s: %w", full, err)
	}
	typ := st.Mode & unix.S_IFMT
	if typ == unix.S_IFDIR {
		return "", &TargetError{Path: full, Reason: "a directory where the machine has a file; move it away"}
	}
	if st.Uid != e.st.Uid || st.Gid != e.st.Gid {
		return Replaced, nil
	}
	if e.isLink {
		if typ != unix.S_IFLNK {
			return Replaced, nil
		}
		l, err := securejoin.Readlinkat(dfd, name)
		if err != nil {
			return "", fmt.Errorf("read the symlink %s: %w", full, err)
		}
		if l != e.link {
			return Replaced, nil
		}
		return Unchanged, nil
	}
	if typ != unix.S_IFREG || st.Mode&0o7777 != e.st.Mode&0o7777 || st.Size != int64(len(e.data)) {
		return Replaced, nil
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", full, err)
	}
	f := os.NewFile(uintptr(fd), full)
	defer f.Close()
	have, err := io.ReadAll(io.LimitReader(f, int64(len(e.data))+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", full, err)
	}
	if !bytes.Equal(have, e.data) {
		return Replaced, nil
	}
	return Unchanged, nil
}

// write writes every New and Replaced entry of plan.
func (t *target) write(s *source, plan []*entry) error {
	for _, e := range plan {
		if e.action != New && e.action != Replaced {
			continue
		}
		if err := t.writeOne(s, e); err != nil {
			return err
		}
	}
	return nil
}

// writeOne writes e under a temporary name in its directory (made with
// O_EXCL, or symlinkat, which never follows), sets its owner, mode and
// times, syncs it and renames it over the final name: rename replaces
// whatever is there, a symlink included, without following it, and a
// reader never sees half a key. On failure the temporary file is
// removed.
func (t *target) writeOne(s *source, e *entry) (err error) {
	dfd, err := t.openParent(e.rel, true, s.dirMeta)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	name := filepath.Base(e.rel)
	tmp := "." + name + tmpSuffix
	full := filepath.Join(t.dir, e.rel)
	_ = unix.Unlinkat(dfd, tmp, 0) // a previous run's leftover, if any
	defer func() {
		if err != nil {
			_ = unix.Unlinkat(dfd, tmp, 0) // best effort; err says what went wrong
		}
	}()
	times := []unix.Timespec{e.st.Atim, e.st.Mtim}
	if e.regenerated {
		times = []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
	}
	if e.isLink {
		if err := unix.Symlinkat(e.link, dfd, tmp); err != nil {
			return fmt.Errorf("symlink %s -> %s: %w", full, e.link, err)
		}
		if err := unix.Fchownat(dfd, tmp, int(e.st.Uid), int(e.st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s to %d:%d: %w", full, e.st.Uid, e.st.Gid, err)
		}
		if err := unix.UtimesNanoAt(dfd, tmp, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set the times of %s: %w", full, err)
		}
	} else {
		fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", filepath.Join(t.dir, filepath.Dir(e.rel), tmp), err)
		}
		f := os.NewFile(uintptr(fd), full)
		err = writeFile(f, e)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", full, cerr)
		}
		if err != nil {
			return err
		}
		if err := unix.UtimesNanoAt(dfd, tmp, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set the times of %s: %w", full, err)
		}
	}
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		return fmt.Errorf("rename %s over %s: %w", tmp, full, err)
	}
	if err := unix.Fsync(dfd); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Dir(full), err)
	}
	return nil
}

// writeFile writes e's content into f and gives it e's owner and mode
// (chown first: it clears setuid and setgid), then syncs it.
func writeFile(f *os.File, e *entry) error {
	if _, err := f.Write(e.data); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	fd := int(f.Fd())
	if err := unix.Fchown(fd, int(e.st.Uid), int(e.st.Gid)); err != nil {
		return fmt.Errorf("chown %s to %d:%d: %w", f.Name(), e.st.Uid, e.st.Gid, err)
	}
	if err := unix.Fchmod(fd, e.st.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod %s %#o: %w", f.Name(), e.st.Mode&0o7777, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	return nil
}
