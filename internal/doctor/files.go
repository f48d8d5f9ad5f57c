package doctor

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/dockroot/dockroot/internal/mountinfo"
	"github.com/dockroot/dockroot/internal/securejoin"
	"golang.org/x/sys/unix"
)

// CheckInit checks that init exists in the image root as an executable
// whose interpreter (a script's #! line, an ELF's dynamic loader) exists
// there too: otherwise the kernel's execve of PID 1 fails with ENOENT and
// the boot ends in "No working init found".
func CheckInit(name, root, init string) Check {
	c := Check{Name: "init of " + name}
	fix := fmt.Sprintf("install an init in the image (e.g. `RUN apt-get install -y systemd-sysv`, or COPY a script to %s), or boot with init=/path/in/the/image", init)
	// The kernel's own path walk, as the boot's check and execve do: a
	// missing directory before "..", or a file used as one, fails here.
	f, err := securejoin.OpenInRoot(root, init, unix.O_PATH)
	file, shown := "", init
	var fi os.FileInfo
	if err == nil {
		file = f.Name()
		if real := strings.TrimPrefix(file, strings.TrimSuffix(root, "/")); real != path.Clean(init) {
			shown += " -> " + real
		}
		fi, err = f.Stat()
		f.Close()
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Status, c.Detail, c.Fix = Fail, shown+" does not exist in the image", fix
		return c
	case err != nil:
		c.Status, c.Detail, c.Fix = Fail, err.Error(), fix
		return c
	case !fi.Mode().IsRegular():
		c.Status, c.Detail, c.Fix = Fail, shown+" is not a regular file", fix
		return c
	case fi.Mode().Perm()&0o111 == 0:
		c.Status, c.Detail = Fail, fmt.Sprintf("%s is not executable (mode %04o)", shown, fi.Mode().Perm())
		c.Fix = "make it executable in the Dockerfile: RUN chmod 755 " + init
		return c
	}
	interp, err := interpreter(file)
	if err != nil {
		c.Status, c.Detail, c.Fix = Fail, fmt.Sprintf("%s: %v", shown, err), fix
		return c
	}
	if interp != "" {
		if f, err := securejoin.OpenInRoot(root, interp, unix.O_PATH); err == nil {
			f.Close()
		} else {
			c.Status = Fail
			c.Detail = fmt.Sprintf("%s needs %s, which is missing in the image", shown, interp)
			c.Fix = "install what provides " + interp + " in the image, or point init= at a program that runs there"
			return c
		}
		shown += " (runs with " + interp + ")"
	}
	c.Status, c.Detail = OK, shown
	return c
}

// interpreter returns what the kernel needs to exec file: a script's #!
// program or a dynamic ELF's PT_INTERP; "" for a static binary.
func interpreter(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := f.Read(head)
	head = head[:n]
	if bytes.HasPrefix(head, []byte("#!")) {
		line, _, _ := bytes.Cut(head[2:], []byte("\n"))
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			return "", errors.New("empty #! line")
		}
		return fields[0], nil
	}
	if !bytes.HasPrefix(head, []byte(elf.ELFMAG)) {
		return "", errors.New("neither a script with #! nor an ELF executable")
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", fmt.Errorf("read ELF: %w", err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", fmt.Errorf("read ELF interpreter: %w", err)
			}
			return strings.TrimRight(string(b), "\x00"), nil
		}
	}
	return "", nil
}

// FstabEntry is one mount line of an fstab(5).
type FstabEntry struct {
	Line    int    // 1-based
	Text    string // the line as written
	Spec    string // device: "LABEL=linux", "/dev/sda2", ...
	File    string // mount point, unescaped and cleaned
	VFSType string
	Options []string
}

// ParseFstab reads fstab(5) lines: whitespace-separated fields, '#'
// comments, \040-style octal escapes in the fields (getmntent(3)).
// Lines with fewer than two fields are skipped, as getmntent does.
func ParseFstab(data []byte) []FstabEntry {
	var out []FstabEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
		line := strings.TrimSpace(text)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		e := FstabEntry{Line: n, Text: text, Spec: mountinfo.Unescape(f[0]), File: path.Clean(mountinfo.Unescape(f[1]))}
		if len(f) > 2 {
			e.VFSType = f[2]
		}
		if len(f) > 3 {
			e.Options = strings.Split(mountinfo.Unescape(f[3]), ",")
		}
		out = append(out, e)
	}
	return out
}

// RootSubvolProblem says what is wrong with fstab line e for a dockroot
// boot, or "" if nothing. At boot systemd-remount-fs (and `mount -o
// remount /`) applies fstab's options for / to the running root: dockroot
// mounted a fresh rw layer there, and a subvol= naming another subvolume
// either fails the remount (btrfs cannot switch subvolumes on remount;
// systemd then leaves / as it was, often read-only) or, for a mount by
// another tool, mounts the wrong tree. subvolid= never matches: the layer
// is new, with a new ID, at every boot.
func RootSubvolProblem(e FstabEntry, rwlayer string) string {
	if e.File != "/" {
		return ""
	}
	want := strings.Trim(rwlayer, "/")
	for _, o := range e.Options {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "subvolid":
			return fmt.Sprintf("line %d mounts / with %s, but dockroot's layer gets a new subvolume ID at every boot: %q", e.Line, o, strings.TrimSpace(e.Text))
		case "subvol":
			if want != "" && strings.Trim(v, "/") == want {
				return ""
			}
			return fmt.Sprintf("line %d mounts / with %s, another subvolume than the layer dockroot boots: %q", e.Line, o, strings.TrimSpace(e.Text))
		}
	}
	return ""
}

// CheckFstab checks the etc/fstab of an image or top layer (root) for a
// line that remounts / with another subvolume.
func CheckFstab(name, root, rwlayer string) Check {
	c := Check{Name: "fstab of " + name}
	file, err := securejoin.Resolve(root, "etc/fstab")
	if err != nil {
		c.Status, c.Detail, c.Fix = Fail, err.Error(), "check that "+root+" is readable"
		return c
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		c.Status, c.Detail = OK, "no etc/fstab"
		return c
	}
	if err != nil {
		c.Status, c.Detail, c.Fix = Fail, err.Error(), "check that "+file+" is readable"
		return c
	}
	var problems []string
	for _, e := range ParseFstab(data) {
		if p := RootSubvolProblem(e, rwlayer); p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		c.Status, c.Detail = Fail, "etc/fstab "+strings.Join(problems, "; ")
		c.Fix = "delete the line for / from etc/fstab (dockroot mounts / itself), or at least drop its subvol= and subvolid= options"
		return c
	}
	c.Status, c.Detail = OK, "etc/fstab does not remount / with another subvolume"
	return c
}

// CheckShadow checks the top layer's etc/shadow and etc/gshadow: the top
// layer is copied over the image with owners and modes as they are, so a
// password file the user made there without care becomes world-readable
// (or user-owned) on the booted system.
func CheckShadow(top string) []Check {
	var out []Check
	for _, rel := range []string{"etc/shadow", "etc/gshadow"} {
		out = append(out, checkSecretFile(top, rel))
	}
	return out
}

func checkSecretFile(top, rel string) Check {
	c := Check{Name: "top layer " + rel}
	// Lstat the path as the top layer holds it: a symlink is copied as a
	// symlink, so what it points to on the booted system is the image's.
	p, err := securejoin.Join(top, rel)
	if err != nil {
		c.Status, c.Detail, c.Fix = Fail, err.Error(), "check that "+top+" is readable"
		return c
	}
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		c.Status, c.Detail = OK, "none (the image's is kept)"
		return c
	}
	if err != nil {
		c.Status, c.Detail, c.Fix = Fail, err.Error(), "check that "+p+" is readable"
		return c
	}
	c.Status, c.Detail, c.Fix = SecretFileStatus(rel, fi)
	return c
}

// SecretFileStatus judges the owner and mode of a password file: owned by
// root, not world-readable or writable, not group-writable. Debian ships
// shadow as root:shadow 0640.
func SecretFileStatus(rel string, fi fs.FileInfo) (Status, string, string) {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return Warn, rel + " is a symlink; it is copied as one and the booted system reads whatever it points to",
			"replace it with the file itself (cp --remove-destination), owned by root, mode 0640"
	}
	if !fi.Mode().IsRegular() {
		return Fail, rel + " is not a regular file", "replace it with a regular file owned by root, mode 0640"
	}
	uid, gid := -1, -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	perm := fi.Mode().Perm()
	detail := fmt.Sprintf("%s is mode %04o, owner %d:%d", rel, perm, uid, gid)
	fix := fmt.Sprintf("chown root:root %s && chmod 0640 %s (in the top layer)", rel, rel)
	switch {
	case uid != 0:
		return Fail, detail + ": not owned by root, so that user can change every password", fix
	case perm&0o004 != 0:
		return Fail, detail + ": world-readable, so every user can read the password hashes", fix
	case perm&0o022 != 0:
		return Fail, detail + ": writable by group or others", fix
	}
	return OK, detail, ""
}
