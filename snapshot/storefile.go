package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// openat2 is unix.Openat2; tests replace it to exercise the fallback for
// kernels without openat2(2) (before 5.6).
var openat2 = unix.Openat2

// StoreDirFS returns the image store rooted at root as an fs.FS whose every
// open stays beneath root and follows no symbolic link, neither in the last
// element nor in a directory above it (openat2 RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS). Opens use O_NONBLOCK so that a fifo returns at once
// instead of blocking until a writer appears; ReadStoreFile then refuses
// anything not regular. root itself may be reached through symlinks: it is
// the caller's configuration, not the store's content.
//
// Every store reads its metadata through it (the Docker data root, the
// Podman graph root): a file an engine writes is never a symlink, a fifo or
// a device, and reading one at boot could hang PID 1 or exhaust its memory.
func StoreDirFS(root string) fs.FS { return storeDirFS{root: root} }

type storeDirFS struct{ root string }

func (d storeDirFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	dir, err := unix.Open(d.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(dir)
	fd, err := openBeneath(dir, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.root, filepath.FromSlash(name))), nil
}

// openBeneath opens name (slash-separated, fs.ValidPath) relative to the
// directory dir without following any symbolic link: ELOOP if an element
// is one.
func openBeneath(dir int, name string, flags int) (int, error) {
	fd, err := openat2(dir, name, &unix.OpenHow{
		Flags:   uint64(flags),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if !errors.Is(err, unix.ENOSYS) {
		return fd, err
	}
	// Before Linux 5.6: one element at a time, each with O_NOFOLLOW (a
	// symlink fails with ELOOP). fs.ValidPath excludes "..", so the walk
	// cannot climb out of dir.
	cur := dir
	closeCur := func() {
		if cur != dir {
			unix.Close(cur)
		}
	}
	defer func() { closeCur() }()
	elems := strings.Split(name, "/")
	for i, e := range elems {
		if e == "." {
			continue
		}
		f := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(elems)-1 {
			f = flags | unix.O_NOFOLLOW
		}
		next, err := unix.Openat(cur, e, f, 0)
		if errors.Is(err, unix.ENOTDIR) {
			// O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR.
			var st unix.Stat_t
			if unix.Fstatat(cur, e, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
		}
		if err != nil {
			return -1, err
		}
		closeCur()
		cur = next
	}
	if cur == dir { // name is "."
		return unix.Openat(dir, ".", flags, 0)
	}
	fd, cur = cur, dir
	return fd, nil
}

// ReadStoreFile reads the store file name (relative to the root of fsys)
// if it is a regular file of at most limit bytes; full names it in errors.
// A missing file is an error matching fs.ErrNotExist; a file the engine
// cannot have written there (a symlink, a fifo, a device, too large) is a
// *StoreFileError. Over any fs.FS the size is checked as well, so fuzz
// targets over an fstest.MapFS go through the same checks as the disk.
func ReadStoreFile(fsys fs.FS, name, full string, limit int64) ([]byte, error) {
	refuse := func(reason string, err error) error {
		return &StoreFileError{Path: full, Limit: limit, Reason: reason, Err: err}
	}
	f, err := fsys.Open(name)
	if err != nil {
		if serr := StoreOpenError(full, limit, err); serr != nil {
			return nil, serr
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", full, err)
	}
	switch m := fi.Mode(); {
	case m&fs.ModeSymlink != 0:
		return nil, refuse("is a symbolic link or lies under one", nil)
	case !m.IsRegular():
		return nil, refuse(fmt.Sprintf("is not a regular file (mode %s)", m), nil)
	case fi.Size() > limit:
		return nil, refuse(fmt.Sprintf("is larger than the limit (%d bytes)", fi.Size()), nil)
	}
	// The size can change under us: read at most one byte past the limit.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", full, err)
	}
	if int64(len(data)) > limit {
		return nil, refuse("is larger than the limit", nil)
	}
	return data, nil
}

// StoreOpenError turns the errors of an open beneath a store root that mean
// "not a file the engine wrote" into a *StoreFileError, and returns nil for
// the rest (a missing file, a permission error). full names the file; limit
// is its read limit, 0 for a directory.
func StoreOpenError(full string, limit int64, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		// ELOOP: RESOLVE_NO_SYMLINKS or O_NOFOLLOW met a symlink; EXDEV:
		// RESOLVE_BENEATH refused a path leaving the store root.
		return &StoreFileError{Path: full, Limit: limit, Reason: "is a symbolic link or lies under one, which dockroot does not follow in the store", Err: err}
	case errors.Is(err, unix.ENXIO):
		// A socket or a fifo without a reader refuses some opens so.
		return &StoreFileError{Path: full, Limit: limit, Reason: "is not a regular file", Err: err}
	}
	return nil
}
