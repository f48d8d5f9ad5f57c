package toplayer

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// replaceSuffix marks, in the top layer's etc/, an account database to
// copy as it is instead of merging: etc/passwd.dockroot-replace (any
// type, any content) makes etc/passwd replace the image's. The marker is
// never copied.
const replaceSuffix = ".dockroot-replace"

// maxAccountsSize bounds an account database Apply reads into memory: an
// image's etc/passwd of gigabytes is an attack on PID 1, not a database.
const maxAccountsSize = 64 << 20

func (a *applier) warnf(format string, args ...any) {
	a.sum.Warnings = append(a.sum.Warnings, fmt.Sprintf(format, args...))
}

// replaceMarkers returns the account databases the top layer's etc/
// (names, sorted; srcDir for messages) asks to replace rather than merge,
// and warns about markers that name no database of the top layer.
func (a *applier) replaceMarkers(names []string) map[string]bool {
	present := map[string]bool{}
	for _, n := range names {
		present[n] = true
	}
	replace := map[string]bool{}
	for _, n := range names {
		base, ok := strings.CutSuffix(n, replaceSuffix)
		switch {
		case !ok:
		case accountKinds[base] == nil:
			a.warnf("etc/%s: only %s are merged, so a marker for %q means nothing; it was not copied",
				n, strings.Join(sortedKinds(), ", "), base)
		case !present[base]:
			a.warnf("etc/%s: the top layer has no etc/%s; the marker was not copied", n, base)
		default:
			replace[base] = true
		}
	}
	return replace
}

// mergeAccountsFile applies the top layer's account database e (a regular
// file, one of accountKinds, in the top layer's etc/) by merging it into
// the image's file of the same name with mergeAccounts. When the image
// has no regular file under that name (none, a symlink, a directory, a
// fifo...), there is nothing to merge: the top layer's file is copied
// like any other, after the same checks. Nothing of the image's is
// followed: its file is opened with O_NOFOLLOW only once fstatat said it
// is a regular file.
func (a *applier) mergeAccountsFile(e *entry, kind string) error {
	k := accountKinds[kind]
	top, err := readAccountsAt(e.sfd, e.name)
	if err != nil {
		return a.fail(e, "read", err)
	}
	var dst unix.Stat_t
	err = unix.Fstatat(e.dfd, e.name, &dst, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return a.fail(e, "stat", err)
	case dst.Mode&unix.S_IFMT == unix.S_IFREG:
		return a.writeMerged(e, kind, top)
	default:
		a.warnf("%s: the image's is a %s, so it was not merged: the top layer's file replaced it", k.file, kindNames[dst.Mode&unix.S_IFMT])
	}
	if _, _, err := mergeAccounts(kind, nil, top); err != nil {
		return a.fail(e, "merge", err)
	}
	if mode := e.st.Mode & 0o7777; shadowKinds[kind] && mode&0o007 != 0 {
		a.warnf("%s: the top layer's mode %#o lets anyone read password hashes; written as %#o", k.file, mode, mode&^0o007)
		e.st.Mode &^= 0o007
	}
	return a.copyFile(e)
}

// writeMerged replaces the image's regular file under e's name with the
// merge of its content and top. The new file gets the image's owner,
// mode (less o+rwx for shadow and gshadow) and xattrs (an SELinux label,
// say), and the current time: its content is new. It is created the way
// copyFile creates files: a new inode under the final name with O_EXCL,
// the image's name unlinked first (never written through, so another
// hard link to it keeps the image's content), and removed again if
// anything fails before it is complete.
func (a *applier) writeMerged(e *entry, kind string, top []byte) error {
	k := accountKinds[kind]
	img, err := unix.Openat(e.dfd, e.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return a.fail(e, "open image's file", err)
	}
	defer unix.Close(img)
	var ist unix.Stat_t
	if err := unix.Fstat(img, &ist); err != nil {
		return a.fail(e, "stat image's file", err)
	}
	if ist.Mode&unix.S_IFMT != unix.S_IFREG {
		return a.fail(e, "open image's file", fmt.Errorf("not a regular file: %w", unix.EINVAL))
	}
	image, err := readAccountsFd(img)
	if err != nil {
		return a.fail(e, "read image's file", err)
	}
	merged, warns, err := mergeAccounts(kind, image, top)
	if err != nil {
		return a.fail(e, "merge", err)
	}
	a.sum.Warnings = append(a.sum.Warnings, warns...)
	mode := ist.Mode & 0o7777
	if shadowKinds[kind] && mode&0o007 != 0 {
		a.warnf("%s: the image's mode %#o lets anyone read password hashes; written as %#o", k.file, mode, mode&^0o007)
		mode &^= 0o007
	}
	nx, err := a.xattrs.list(img)
	if err != nil {
		return a.fail(e, "list xattrs", err)
	}
	create := uint32(mode & 0o777)
	if nx > 0 {
		create |= 0o200 // user.* xattrs need write permission without CAP_FOWNER
	}
	fd := -1
	err = a.createReplacing(e, func() (err error) {
		fd, err = unix.Openat(e.dfd, e.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, create)
		return err
	})
	if err != nil {
		return a.fail(e, "create", err)
	}
	done := false
	defer func() {
		if !done {
			// Never leave a half-written database under the final name.
			unix.Close(fd)
			_ = unix.Unlinkat(e.dfd, e.name, 0) // best effort; the error being returned matters more
		}
	}()
	if _, err := writeFullAt(fd, merged, 0); err != nil {
		return a.fail(e, "write", err)
	}
	meta := ist
	meta.Mode = ist.Mode&^0o7777 | mode
	meta.Atim = unix.Timespec{Nsec: unix.UTIME_NOW}
	meta.Mtim = meta.Atim
	if err := a.setMetaListed(fd, img, &meta, nx); err != nil {
		return a.fail(e, err.op, err.err)
	}
	done = true
	if err := unix.Close(fd); err != nil {
		_ = unix.Unlinkat(e.dfd, e.name, 0)
		return a.fail(e, "close", err)
	}
	a.sum.Files++
	a.sum.Bytes += int64(len(merged))
	a.sum.Copied += int64(len(merged))
	return nil
}

// readAccountsAt reads the regular file name in dirfd without following
// a symlink.
func readAccountsAt(dirfd int, name string) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return readAccountsFd(fd)
}

// readAccountsFd reads the open file fd from offset 0, up to
// maxAccountsSize bytes.
func readAccountsFd(fd int) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("not a regular file: %w", unix.EINVAL)
	}
	if st.Size > maxAccountsSize {
		return nil, fmt.Errorf("%d bytes, more than the %d an account database may have: %w", st.Size, maxAccountsSize, unix.EFBIG)
	}
	buf := make([]byte, 0, st.Size+1)
	for {
		if len(buf) == cap(buf) {
			if len(buf) > maxAccountsSize {
				return nil, fmt.Errorf("more than %d bytes: %w", maxAccountsSize, unix.EFBIG)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Pread(fd, buf[len(buf):cap(buf)], int64(len(buf)))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
