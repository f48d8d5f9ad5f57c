package hook

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
//  1. check that exec of init will work in the new root (ResolveInit:
//     symlinks inside it, /sbin/init -> /lib/systemd/systemd, and its
//     loader) before anything is torn down, so a bad init= still leaves a
//     working initramfs for onfail=shell;
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

// ResolveInit checks that init (an absolute path such as /sbin/init) is a
// program execve(2) will run once root is "/", and returns the file's path
// under root. It is checked before the fresh layer is committed, so what it
// lets through must not fail at exec: the commit may already have deleted
// the previous layer (dockroot.keep=0).
//
// So it asks what the kernel will ask:
//   - the path walk (securejoin.OpenInRoot: openat2 RESOLVE_IN_ROOT, or the
//     same walk in userspace): ENOENT at the first missing component and
//     ENOTDIR at a non-directory followed by anything, before a later ".."
//     applies; symlinks inside root, 40 at most;
//   - the permission check of a root exec: a regular file with an x bit
//     (fs/namei.c generic_permission), else EACCES;
//   - a loader the kernel recognises (fs/binfmt_elf.c, binfmt_script.c):
//     an ELF, or a #! line naming an interpreter, else ENOEXEC;
//   - the interpreter: an ELF's PT_INTERP, or a script's #! program (and
//     that program's own PT_INTERP), found and executable the same way;
//     a dynamically linked init whose loader is missing fails with ENOENT.
func ResolveInit(root, init string) (string, error) {
	if !strings.HasPrefix(init, "/") {
		return "", fmt.Errorf("init=%s: must be an absolute path inside the image, e.g. init=/sbin/init", init)
	}
	x, detail, err := inspectExec(root, init)
	if err != nil {
		advice := "set init= to the image's init (e.g. init=/lib/systemd/systemd or init=/bin/sh), or add an init to the image"
		if errors.Is(err, unix.EACCES) {
			advice = "set init= to the image's init, or make it executable in the image"
		}
		return "", &initError{msg: fmt.Sprintf("init %s in the new root%s; %s", init, detail, advice), err: err}
	}
	// The kernel maps an ELF's interpreter as it is (the loader's own
	// PT_INTERP is never looked at); a script's interpreter goes through
	// the binfmt handlers again, so a dynamically linked one needs its
	// loader too. Scripts are followed one level.
	via, cur := "its", x
	for cur.interp != "" {
		kind := "ELF interpreter"
		if cur.script {
			kind = "#! interpreter"
		}
		via += " " + kind + " " + cur.interp
		next, detail, err := inspectExec(root, cur.interp)
		if err != nil {
			return "", &initError{err: err, msg: fmt.Sprintf("init %s in the new root: %s%s; set init= to a program the image can run (e.g. init=/bin/sh), or add %s to the image",
				init, via, detail, cur.interp)}
		}
		if !cur.script || next.script {
			break
		}
		via += " needs"
		cur = next
	}
	return x.file, nil
}

// openInRoot looks a path up in the new root as exec(2) will; tests put
// securejoin.WalkInRoot here to cover kernels without openat2.
var openInRoot = securejoin.OpenInRoot

// initError is a failed init check: the message for the console, the
// errno exec would fail with for errors.Is.
type initError struct {
	msg string
	err error
}

func (e *initError) Error() string { return e.msg }
func (e *initError) Unwrap() error { return e.err }

// execFile is what exec(2) would load for a path.
type execFile struct {
	file   string // its path under root
	interp string // PT_INTERP, or the #! program; "" for a static ELF
	script bool   // interp comes from a #! line
}

// inspectExec checks that p in root is something exec(2) would load. On
// failure, detail continues a sentence that names p (": /nonexist: no
// such file or directory", " (/r/bin/x) is not an executable file …") and
// err is the errno.
func inspectExec(root, p string) (x execFile, detail string, err error) {
	f, err := openInRoot(root, p, unix.O_PATH)
	if err != nil {
		var e *securejoin.Error
		if errors.As(err, &e) {
			if e.Component != "" && e.Component != p {
				return x, fmt.Sprintf(": %s: %v", e.Component, e.Err), e.Err
			}
			return x, fmt.Sprintf(": %v", e.Err), e.Err
		}
		return x, ": " + err.Error(), err
	}
	x.file = f.Name()
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return x, fmt.Sprintf(" (%s): %v", x.file, err), err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return x, fmt.Sprintf(" (%s) is not an executable file (mode %v), so exec fails: %v", x.file, fi.Mode(), unix.EACCES), unix.EACCES
	}
	r, err := openInRoot(root, p, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK)
	if err != nil {
		return x, fmt.Sprintf(" (%s): %v", x.file, err), err
	}
	defer r.Close()
	// binfmt handlers see the first BINPRM_BUF_SIZE bytes, zero-padded.
	var head [256]byte
	if _, err := r.ReadAt(head[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return x, fmt.Sprintf(" (%s): %v", x.file, err), err
	}
	switch {
	case bytes.HasPrefix(head[:], []byte("#!")):
		x.interp, x.script = shebangInterp(head), true
		if x.interp == "" {
			return x, fmt.Sprintf(" (%s) is a script whose #! line names no interpreter, so exec fails: %v", x.file, unix.ENOEXEC), unix.ENOEXEC
		}
	case bytes.HasPrefix(head[:], []byte("\x7fELF")):
		x.interp, err = elfInterp(r)
		if err != nil {
			return x, fmt.Sprintf(" (%s) is an ELF file the kernel will not run (%v), so exec fails: %v", x.file, err, unix.ENOEXEC), unix.ENOEXEC
		}
	default:
		return x, fmt.Sprintf(" (%s) is neither an ELF executable nor a #! script, so exec fails: %v", x.file, unix.ENOEXEC), unix.ENOEXEC
	}
	return x, "", nil
}

// shebangInterp returns the interpreter of a #! line as fs/binfmt_script.c
// finds it in the first 256 bytes: after "#!" and spaces or tabs, up to a
// space, tab, NUL or the end of the line; "" when there is none, or when
// the name fills the buffer and may be cut off.
func shebangInterp(buf [256]byte) string {
	spacetab := func(c byte) bool { return c == ' ' || c == '\t' }
	last := len(buf) - 1
	end := bytes.IndexByte(buf[:], '\n')
	if end < 0 {
		i := 2
		for i <= last && spacetab(buf[i]) {
			i++
		}
		if i > last {
			return ""
		}
		j := i
		for j <= last && !spacetab(buf[j]) && buf[j] != 0 {
			j++
		}
		if j > last {
			return "" // no terminator: the name may be truncated (ENOEXEC)
		}
		end = last
	}
	for end > 2 && spacetab(buf[end-1]) {
		end--
	}
	i := 2
	for i < end && spacetab(buf[i]) {
		i++
	}
	j := i
	for j < end && !spacetab(buf[j]) && buf[j] != 0 {
		j++
	}
	return string(buf[i:j])
}

// elfInterp returns the PT_INTERP of the ELF executable r ("" for a static
// one), checking what fs/binfmt_elf.c load_elf_binary checks before it
// opens the interpreter; an error means the kernel answers ENOEXEC. It
// reads the headers by their offsets in elf(5): debug/elf would bring
// DWARF and decompressors into PID 1 for a few fields.
func elfInterp(r io.ReaderAt) (string, error) {
	const (
		etExec, etDyn = 2, 3
		ptInterp      = 3
	)
	var h [64]byte // an ELF64 header; an ELF32 one is 52 bytes
	if n, _ := r.ReadAt(h[:], 0); n < 52 {
		return "", fmt.Errorf("short ELF header")
	}
	var order binary.ByteOrder
	switch h[5] { // EI_DATA
	case 1:
		order = binary.LittleEndian
	case 2:
		order = binary.BigEndian
	default:
		return "", fmt.Errorf("unknown ELF data encoding %d", h[5])
	}
	var phoff uint64
	var phentsize, phnum uint16
	var progSize int
	switch h[4] { // EI_CLASS
	case 1:
		phoff, phentsize, phnum, progSize = uint64(order.Uint32(h[28:])), order.Uint16(h[42:]), order.Uint16(h[44:]), 32
	case 2:
		phoff, phentsize, phnum, progSize = order.Uint64(h[32:]), order.Uint16(h[54:]), order.Uint16(h[56:]), 56
	default:
		return "", fmt.Errorf("unknown ELF class %d", h[4])
	}
	if t := order.Uint16(h[16:]); t != etExec && t != etDyn {
		return "", fmt.Errorf("ELF type %d, not an executable", t)
	}
	if int(phentsize) != progSize || phnum == 0 || int(phnum)*progSize > 65536 {
		return "", fmt.Errorf("bad ELF program headers (%d of %d bytes)", phnum, phentsize)
	}
	ph := make([]byte, int(phnum)*progSize)
	if _, err := r.ReadAt(ph, int64(phoff)); err != nil {
		return "", fmt.Errorf("short ELF program headers")
	}
	for ; len(ph) > 0; ph = ph[progSize:] {
		if order.Uint32(ph) != ptInterp {
			continue
		}
		off, filesz := uint64(order.Uint32(ph[4:])), uint64(order.Uint32(ph[16:]))
		if progSize == 56 {
			off, filesz = order.Uint64(ph[8:]), order.Uint64(ph[32:])
		}
		if filesz < 2 || filesz > unix.PathMax {
			return "", fmt.Errorf("PT_INTERP of %d bytes", filesz)
		}
		b := make([]byte, filesz)
		if _, err := r.ReadAt(b, int64(off)); err != nil {
			return "", fmt.Errorf("short PT_INTERP")
		}
		if b[len(b)-1] != 0 {
			return "", fmt.Errorf("PT_INTERP not NUL-terminated")
		}
		return string(b[:bytes.IndexByte(b, 0)]), nil
	}
	return "", nil
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
