package hook

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dockroot/dockroot/internal/securejoin"
	"golang.org/x/sys/unix"
)

// PseudoMounts are the mounts SwitchRoot moves into the new root, in order.
// /run carries /run/dockroot/boot.json into the booted system.
var PseudoMounts = []string{"/dev", "/proc", "/sys", "/run"}

// SwitchRoot makes newRoot (a mount point) the root filesystem and execs
// init in it with argv [init, args...]. It returns only on failure.
//
// The kernel's initramfs is the rootfs mount, which cannot be pivot_root'ed
// away (pivot_root(2): "the rootfs cannot be unmounted"), so this does what
// busybox switch_root and u-root do, carefully:
//
//  1. check that init exists in the new root, resolving symlinks inside it
//     (/sbin/init -> /lib/systemd/systemd), before anything is torn down, so
//     a bad init= still leaves a working initramfs for onfail=shell;
//  2. move /dev, /proc, /sys and /run under the new root (MS_MOVE), each to
//     its path resolved inside the new root, so an image's `run -> /x`
//     symlink cannot send a mount outside it;
//  3. if / is tmpfs or ramfs (the initramfs), delete its contents to give
//     the memory back, never following symlinks or crossing into another
//     filesystem, and skipping the new root; any other / is left alone;
//  4. chdir to the new root, move it over /, chroot there, chdir /;
//  5. exec init with a clean environment.
//
// After step 3 there is no way back: a failure in steps 4 or 5 leaves
// PID 1 without an initramfs, which onfail can only answer by waiting or
// rebooting.
func SwitchRoot(log Logger, newRoot, init string, args []string) error {
	if _, err := ResolveInit(newRoot, init); err != nil {
		return err
	}

	for _, m := range PseudoMounts {
		if err := moveInto(newRoot, m); err != nil {
			// The image's init can mount its own /dev, /proc and /sys; only
			// boot.json is lost when /run cannot move. Detach the old mount
			// so nothing keeps the initramfs busy.
			log.Warnf("switch_root: %v; detaching %s instead", err, m)
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
				log.Warnf("switch_root: detach %s: %v", m, err)
			}
		}
	}

	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return fmt.Errorf("switch_root: statfs /: %w", err)
	}
	if isRAMFS(int64(st.Type)) {
		rootDev, err := devOfPath("/")
		if err != nil {
			return fmt.Errorf("switch_root: stat /: %w", err)
		}
		n, err := FreeTree("/", FreeOptions{RootDev: rootDev, Skip: filepath.Clean(newRoot), DevOf: devOf})
		if err != nil {
			// Not fatal: the cost is the initramfs's memory, not the boot.
			log.Warnf("switch_root: freeing the initramfs: removed %d entries, first error: %v", n, err)
		} else {
			log.Debugf("switch_root: freed the initramfs (%d entries)", n)
		}
	} else {
		log.Warnf("switch_root: / is not tmpfs or ramfs (statfs type %#x): not deleting anything from it", st.Type)
	}

	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch_root: chdir %s: %w", newRoot, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch_root: move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch_root: chroot %s: %w", newRoot, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch_root: chdir / in the new root: %w", err)
	}
	argv := append([]string{init}, args...)
	log.Noticef("switch_root: exec %s", strings.Join(argv, " "))
	if closer, ok := log.(interface{ Close() error }); ok {
		closer.Close()
	}
	err := unix.Exec(init, argv, InitEnv(os.Environ()))
	return fmt.Errorf("switch_root: exec %s in the new root: %w", init, err)
}

// InitEnv is the environment the image's init starts with: a standard PATH,
// HOME=/ and the kernel's TERM (linux when unset). The rest of the
// initramfs environment is dropped: the kernel puts every unknown
// key=value cmdline parameter there (docker_path=, toplayer=, ...), which
// is noise to the image's init and everything it spawns.
func InitEnv(inherited []string) []string {
	term := "linux"
	for _, kv := range inherited {
		if v, ok := strings.CutPrefix(kv, "TERM="); ok && v != "" {
			term = v
		}
	}
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/",
		"TERM=" + term,
	}
}

// moveInto moves the mount at m (e.g. /run) to the same path inside newRoot,
// creating the directory there when the image lacks it.
func moveInto(newRoot, m string) error {
	dst, err := MkdirInRoot(newRoot, m)
	if err != nil {
		return fmt.Errorf("move %s into the new root: %w", m, err)
	}
	if err := unix.Mount(m, dst, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to %s: %w", m, dst, err)
	}
	return nil
}

// isRAMFS says whether a statfs f_type is one the kernel uses for the
// initramfs (rootfs is tmpfs, or ramfs without CONFIG_TMPFS).
func isRAMFS(t int64) bool {
	return t == unix.TMPFS_MAGIC || t == int64(uint32(unix.RAMFS_MAGIC))
}

// ResolveInit checks that init (an absolute path such as /sbin/init) names
// an executable regular file inside root, following symlinks the way they
// will resolve once root is "/" (securejoin.Resolve). It returns the
// file's path under root.
func ResolveInit(root, init string) (string, error) {
	if !strings.HasPrefix(init, "/") {
		return "", fmt.Errorf("init=%s: must be an absolute path inside the image, e.g. init=/sbin/init", init)
	}
	p, err := securejoin.Resolve(root, init)
	var fi os.FileInfo
	if err == nil {
		// ResolveInRoot takes a missing component literally; stat says
		// whether init is there.
		fi, err = os.Stat(p)
	}
	if err != nil {
		return "", fmt.Errorf("init %s in the new root: %w; set init= to the image's init (e.g. init=/lib/systemd/systemd or init=/bin/sh), or add an init to the image", init, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("init %s in the new root (%s) is not an executable file (mode %v); set init= to the image's init, or make it executable in the image", init, p, fi.Mode())
	}
	return p, nil
}

// MkdirInRoot returns the directory p resolved inside root (see
// securejoin.Resolve), creating it with mode 0755 when it is missing.
// A missing last component is created; one that is a dangling symlink is
// created at its target, resolved inside root as well (an image's
// run -> /var/run). The parent must exist.
func MkdirInRoot(root, p string) (string, error) {
	return mkdirInRoot(root, p, 0)
}

func mkdirInRoot(root, p string, hops int) (string, error) {
	p = filepath.Clean("/" + p)
	parent, err := securejoin.Resolve(root, filepath.Dir(p))
	if err != nil {
		return "", err
	}
	dir := filepath.Join(parent, filepath.Base(p))
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", err
		}
		return dir, nil
	case err != nil:
		return "", err
	case fi.Mode()&fs.ModeSymlink != 0:
		if hops++; hops > securejoin.MaxSymlinks {
			return "", fmt.Errorf("resolve %s: %w", p, syscall.ELOOP)
		}
		target, err := os.Readlink(dir)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(target, "/") {
			// Relative to the link's directory, as seen inside root.
			rel, err := filepath.Rel(root, parent)
			if err != nil {
				return "", err
			}
			target = filepath.Join("/", rel, target)
		}
		return mkdirInRoot(root, target, hops)
	case !fi.IsDir():
		return "", fmt.Errorf("%s (%s) is not a directory", p, dir)
	}
	return dir, nil
}

// FreeOptions tells FreeTree what it may delete.
type FreeOptions struct {
	// RootDev is the st_dev of the filesystem being freed; directories on
	// any other device (mounts, including bind mounts from elsewhere) are
	// never entered.
	RootDev uint64
	// Skip is a path never entered or removed: the new root's mount point.
	Skip string
	// DevOf returns the device a directory entry lives on (from its lstat).
	DevOf func(path string, fi fs.FileInfo) (uint64, error)
}

// FreeTree deletes everything under dir except what opts excludes, without
// following symlinks (a symlink is unlinked, never resolved) and without
// leaving RootDev. It keeps going after errors and returns how many entries
// it removed and the first error.
func FreeTree(dir string, opts FreeOptions) (removed int, firstErr error) {
	note := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	var walk func(dir string)
	walk = func(dir string) {
		f, err := os.Open(dir)
		if err != nil {
			note(err)
			return
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			note(fmt.Errorf("read %s: %w", dir, err))
		}
		for _, name := range names {
			p := filepath.Join(dir, name)
			if p == opts.Skip {
				continue
			}
			fi, err := os.Lstat(p)
			if err != nil {
				note(err)
				continue
			}
			if !fi.IsDir() {
				if err := unix.Unlink(p); err != nil {
					note(fmt.Errorf("unlink %s: %w", p, err))
					continue
				}
				removed++
				continue
			}
			dev, err := opts.DevOf(p, fi)
			if err != nil {
				note(err)
				continue
			}
			if dev != opts.RootDev {
				continue
			}
			walk(p)
			if err := unix.Rmdir(p); err != nil {
				// ENOTEMPTY when something inside was skipped: expected.
				if !errors.Is(err, unix.ENOTEMPTY) {
					note(fmt.Errorf("rmdir %s: %w", p, err))
				}
				continue
			}
			removed++
		}
	}
	walk(dir)
	return removed, firstErr
}

func devOf(path string, fi fs.FileInfo) (uint64, error) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), nil
	}
	return 0, fmt.Errorf("stat %s: no device number", path)
}

func devOfPath(path string) (uint64, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	return devOf(path, fi)
}
