package bootmenu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"

	"github.com/dockroot/dockroot/toplayer"
)

// Kernel is a Linux kernel found inside an image's root filesystem.
type Kernel struct {
	Version string // "6.1.0-28-amd64"
	Path    string // in the image: "/boot/vmlinuz-6.1.0-28-amd64"
	// Modules: the image has lib/modules/<Version>/modules.dep, the
	// depmod index an initramfs builder and the booted system load
	// modules by (a directory holding only vmlinuz does not count).
	Modules bool
}

// FindKernels lists the kernels in the image root filesystem at root, in
// the places Debian and Fedora-style packages put them: /boot/vmlinuz-KVER
// and /usr/lib/modules/KVER/vmlinuz (or /lib/modules/KVER/vmlinuz). Paths
// are resolved inside root, so an image's absolute symlink (lib ->
// /usr/lib) is followed within the image, never on the host. Sorted by
// version, oldest first.
func FindKernels(root string) ([]Kernel, error) {
	byVer := map[string]*Kernel{}
	add := func(ver, p string) {
		if _, dup := byVer[ver]; !dup {
			byVer[ver] = &Kernel{Version: ver, Path: p}
		}
	}
	boot, err := readDirIn(root, "/boot")
	if err != nil {
		return nil, err
	}
	for _, name := range boot {
		ver, ok := strings.CutPrefix(name, "vmlinuz-")
		if ok && ver != "" && isKernelFile(root, "/boot/"+name) {
			add(ver, "/boot/"+name)
		}
	}
	for _, dir := range []string{"/usr/lib/modules", "/lib/modules"} {
		vers, err := readDirIn(root, dir)
		if err != nil {
			return nil, err
		}
		for _, ver := range vers {
			if p := path.Join(dir, ver, "vmlinuz"); isKernelFile(root, p) {
				add(ver, p)
			}
		}
	}
	out := make([]Kernel, 0, len(byVer))
	for ver, k := range byVer {
		for _, dir := range []string{"/usr/lib/modules", "/lib/modules"} {
			if isFileIn(root, path.Join(dir, ver, "modules.dep")) {
				k.Modules = true
			}
		}
		out = append(out, *k)
	}
	sort.Slice(out, func(i, j int) bool { return VersionLess(out[i].Version, out[j].Version) })
	return out, nil
}

// readDirIn lists the names in dir of the image at root; a missing
// directory is empty.
func readDirIn(root, dir string) ([]string, error) {
	p, err := toplayer.ResolveInRoot(root, dir)
	if err != nil {
		return nil, err
	}
	des, err := os.ReadDir(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look for kernels in %s: %w", p, err)
	}
	names := make([]string, len(des))
	for i, de := range des {
		names[i] = de.Name()
	}
	return names, nil
}

func isKernelFile(root, p string) bool {
	rp, err := toplayer.ResolveInRoot(root, p)
	if err != nil {
		return false
	}
	fi, err := os.Stat(rp)
	return err == nil && fi.Mode().IsRegular() && fi.Size() > 0
}

func isFileIn(root, p string) bool {
	rp, err := toplayer.ResolveInRoot(root, p)
	if err != nil {
		return false
	}
	fi, err := os.Stat(rp)
	return err == nil && fi.Mode().IsRegular()
}

// VersionLess orders kernel versions by their numeric parts: 6.1.0-9 before
// 6.1.0-28, 6.9 before 6.12.
func VersionLess(a, b string) bool {
	for a != "" && b != "" {
		na, ra := leadingNum(a)
		nb, rb := leadingNum(b)
		switch {
		case na != "" && nb != "":
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = ra, rb
		case a[0] != b[0]:
			return a[0] < b[0]
		default:
			a, b = a[1:], b[1:]
		}
	}
	return len(a) < len(b)
}

func leadingNum(s string) (num, rest string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n := strings.TrimLeft(s[:i], "0")
	if i > 0 && n == "" {
		n = "0"
	}
	return n, s[i:]
}
