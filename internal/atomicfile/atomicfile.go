// Package atomicfile replaces a file so that a reader, or the next boot
// after a power cut, sees either the old content or the new, never a mix.
//
// It is the one implementation of "temporary file in the same directory,
// fsync, rename, fsync the directory" for dockroot: the boot state and
// boot record that dockroot-init writes, the boot entries and menus that
// `dockroot install` and `dockroot menu` write, and the initramfs that
// `dockroot initramfs` builds. It uses only the standard library, so the
// static init binary may import it.
//
// It is a leaf: it imports nothing of dockroot's.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// WriteFile replaces path with data and gives it mode perm. The directory
// must exist.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write replaces path with what write writes and gives it mode perm. If
// write fails, path is left as it was and the temporary file is removed.
//
// The temporary file sits in path's directory, because rename(2) is atomic
// only within one filesystem. The directory is fsynced after the rename:
// without that the new directory entry, and so the rename itself, may not
// survive a power cut (fsync(2): syncing a file does not sync the entry
// that names it). A symlink at path is replaced, not followed.
func Write(path string, perm os.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return fmt.Errorf("write %s: create temporary file: %w", path, err)
	}
	tmp := f.Name()
	err = write(f)
	if err == nil {
		// CreateTemp makes the file 0600; chmod is not masked by the umask.
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: open directory to fsync it: %w", path, err)
	}
	defer d.Close()
	// Some filesystems (FUSE, network ones) refuse fsync on a directory
	// with EINVAL: there the rename is as durable as they make it.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("write %s: fsync directory %s: %w", path, dir, err)
	}
	return nil
}

// RemoveStale deletes the temporary files that a Write of path cut short
// by a crash left behind. Call it only where one writer owns path: the
// temporary file of a Write running at the same moment would go too, and
// that Write would fail.
func RemoveStale(path string) {
	dir := filepath.Dir(path)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix(path)) && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// tempPrefix starts the names of path's temporary files: hidden, so
// directory listings (and bootloaders scanning an ESP) pass over them.
// os.CreateTemp adds a random suffix.
func tempPrefix(path string) string {
	return "." + filepath.Base(path) + ".tmp-"
}
