// Package imagekernel finds the Linux kernels an image's root filesystem
// carries and pairs each with the image's own modules, so that the kernel
// dockroot installs, the modules in its initramfs and the /lib/modules the
// booted image sees all belong to the same build.
//
// Host-side code, the one kernel finder of the CLI: `dockroot install`
// takes the kernel it boots from Scan, `dockroot doctor` reports the
// mismatches Scan finds, `dockroot images` lists what Scan finds. Every path is
// resolved inside the image root (symlinks as after chroot), never on the
// host, so an image's /boot/vmlinuz -> /something cannot read host files.
//
// It is host-only and must not import the boot (hook) or internal/commands.
package imagekernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dockroot/dockroot/internal/kernel"
	"github.com/dockroot/dockroot/internal/securejoin"
	"golang.org/x/sys/unix"
)

// ErrNoKernel: the image has no kernel file at all.
var ErrNoKernel = errors.New("image has no kernel")

// InstallHint says how to put a kernel into an image; errors about a
// missing kernel end with it.
const InstallHint = "install a kernel package in the image's Dockerfile, e.g. `RUN apt-get install -y linux-image-amd64` " +
	"(Debian/Ubuntu), `RUN dnf install -y kernel` (Fedora) or `RUN pacman -S --noconfirm linux` (Arch), and build it again"

// moduleTrees are where distributions keep /lib/modules, relative to the
// root; the same order the initramfs builder searches.
var moduleTrees = []string{"lib/modules", "usr/lib/modules"}

// Kernel is one kernel file in an image, paired with its modules.
type Kernel struct {
	// Version is the kernel release (uname -r): the one written in the
	// kernel's own header when it has one (x86 bzImage), else taken from
	// the file name.
	Version string
	// Rel is where the kernel was found, relative to the root:
	// "boot/vmlinuz-6.1.0-56-amd64" or "usr/lib/modules/6.8.1-arch1/vmlinuz".
	Rel string
	// File is the host path of the kernel, symlinks resolved inside the root.
	File string
	// NameVersion is the version the path names ("" for boot/vmlinuz-lts
	// style names that do not carry one); HeaderVersion the one in the
	// kernel's header ("" when the format has none, e.g. arm64 Image).
	NameVersion, HeaderVersion string
	// Modules is lib/modules/Version relative to the root, "" when the
	// image has no modules for this kernel.
	Modules string
}

// Scan is what an image root holds: its kernels, newest first, and the
// module trees (kernel releases) under lib/modules and usr/lib/modules.
type Scan struct {
	Root        string
	Kernels     []Kernel
	ModuleTrees []kernel.Tree
}

// ScanRoot looks for kernels in root: boot/vmlinuz-* and
// {usr/,}lib/modules/KVER/vmlinuz (the merged-/usr layout of Arch and
// Fedora), each followed through symlinks inside root. Links to the same
// file (Debian's /boot/vmlinuz -> vmlinuz-KVER) count once.
func ScanRoot(root string) (*Scan, error) {
	s := &Scan{Root: root}
	trees, err := moduleTreesIn(root)
	if err != nil {
		return nil, err
	}
	s.ModuleTrees = trees
	seen := map[string]bool{}
	add := func(rel, nameVersion string) error {
		file, err := securejoin.Resolve(root, rel)
		if err != nil {
			return err
		}
		fi, err := os.Stat(file)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil // a dangling link (/boot/vmlinuz.old), a stray file in lib/modules
		}
		if err != nil {
			return fmt.Errorf("kernel %s in %s: %w", rel, root, err)
		}
		if !fi.Mode().IsRegular() || fi.Size() == 0 || seen[file] {
			return nil
		}
		seen[file] = true
		hv, err := headerVersionOf(file)
		if err != nil {
			return fmt.Errorf("kernel %s in %s: %w", rel, root, err)
		}
		k := Kernel{Rel: rel, File: file, NameVersion: nameVersion, HeaderVersion: hv, Version: hv}
		if k.Version == "" {
			k.Version = nameVersion
		}
		// Fedora's /boot/vmlinuz-KVER is a copy of the package's
		// lib/modules/KVER/vmlinuz, not a link: one kernel, two files.
		if seen["version:"+k.Version] && (hv == "" || hv == nameVersion) {
			return nil
		}
		seen["version:"+k.Version] = true
		s.Kernels = append(s.Kernels, k)
		return nil
	}
	// lib/modules/KVER/vmlinuz first: where a distribution ships both, that
	// one is the package's own file and /boot holds a copy. Every KVER
	// directory counts, not only module trees: a kernel whose modules are
	// missing is still a kernel, and Problems reports it.
	dirs, err := versionDirs(root)
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if err := add(path.Join(d.Dir, "vmlinuz"), d.Version); err != nil {
			return nil, err
		}
	}
	names, err := readDirInRoot(root, "boot")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		v, ok := strings.CutPrefix(name, "vmlinuz-")
		if !ok || v == "" {
			continue
		}
		if err := add(path.Join("boot", name), v); err != nil {
			return nil, err
		}
	}
	s.pair()
	return s, nil
}

// pair fills in each kernel's Modules and sorts newest first.
func (s *Scan) pair() {
	dirs := map[string]string{}
	for _, t := range s.ModuleTrees {
		if _, ok := dirs[t.Version]; !ok {
			dirs[t.Version] = t.Dir
		}
	}
	for i := range s.Kernels {
		s.Kernels[i].Modules = dirs[s.Kernels[i].Version]
	}
	sort.SliceStable(s.Kernels, func(i, j int) bool {
		return kernel.CompareVersions(s.Kernels[i].Version, s.Kernels[j].Version) > 0
	})
}

// Bootable returns the kernel to install: the one of version kver, or the
// newest that has its modules when kver is empty. The error says what the
// image lacks and how to fix it.
func (s *Scan) Bootable(kver string) (Kernel, error) {
	if len(s.Kernels) == 0 {
		if len(s.ModuleTrees) > 0 {
			return Kernel{}, fmt.Errorf("%w: %s has modules for %s but no kernel file (looked for boot/vmlinuz-* and lib/modules/KVER/vmlinuz): %s",
				ErrNoKernel, s.Root, treeVersions(s.ModuleTrees), InstallHint)
		}
		return Kernel{}, fmt.Errorf("%w: no boot/vmlinuz-* or lib/modules/KVER/vmlinuz in %s: %s", ErrNoKernel, s.Root, InstallHint)
	}
	var have []string
	for _, k := range s.Kernels {
		have = append(have, k.Version)
		if kver != "" && k.Version != kver {
			continue
		}
		if k.Modules == "" {
			if kver != "" {
				return Kernel{}, fmt.Errorf("kernel %s (%s) has no modules in lib/modules/%s of %s: %s", k.Version, k.Rel, k.Version, s.Root, s.mismatchHint())
			}
			continue
		}
		return k, nil
	}
	if kver != "" {
		return Kernel{}, fmt.Errorf("no kernel %s in %s; it has %s", kver, s.Root, strings.Join(have, ", "))
	}
	return Kernel{}, fmt.Errorf("no kernel in %s has its modules: kernels %s, modules for %s: %s",
		s.Root, strings.Join(have, ", "), treeVersions(s.ModuleTrees), s.mismatchHint())
}

func (s *Scan) mismatchHint() string {
	return "the kernel package is incomplete or another package's files replaced it; reinstall the kernel package in the Dockerfile " +
		"(e.g. `RUN apt-get install -y --reinstall linux-image-amd64`) and build the image again"
}

// Problems lists, one line each, what would make a kernel of this image
// boot without its modules: a kernel without a module tree, a file whose
// name and header disagree, a module tree without a kernel. Empty means
// every kernel matches its modules.
func (s *Scan) Problems() []string {
	var out []string
	used := map[string]bool{}
	for _, k := range s.Kernels {
		used[k.Version] = true
		if k.NameVersion != "" && k.HeaderVersion != "" && k.NameVersion != k.HeaderVersion {
			out = append(out, fmt.Sprintf("%s is named for %s but its header says %s", k.Rel, k.NameVersion, k.HeaderVersion))
		}
		if k.Modules == "" {
			out = append(out, fmt.Sprintf("kernel %s (%s) has no lib/modules/%s (modules for: %s)", k.Version, k.Rel, k.Version, treeVersions(s.ModuleTrees)))
		}
	}
	if len(s.Kernels) > 0 {
		for _, t := range s.ModuleTrees {
			if !used[t.Version] {
				out = append(out, fmt.Sprintf("%s has no kernel file (a leftover of a removed kernel?)", t.Dir))
			}
		}
	}
	return out
}

func treeVersions(ts []kernel.Tree) string {
	if len(ts) == 0 {
		return "none"
	}
	vs := make([]string, len(ts))
	for i, t := range ts {
		vs[i] = t.Version
	}
	return strings.Join(vs, ", ")
}

// ModulesRoot returns a directory D such that D/lib/modules/KVER is k's
// module tree with every symlink on the way resolved inside the image: the
// root to give the initramfs builder, which reads through os.Root and so
// refuses absolute links such as an image's /lib -> /usr/lib.
func (s *Scan) ModulesRoot(k Kernel) (string, error) {
	if k.Modules == "" {
		return "", fmt.Errorf("kernel %s has no modules in %s", k.Version, s.Root)
	}
	modules, err := securejoin.Resolve(s.Root, path.Dir(k.Modules))
	if err != nil {
		return "", err
	}
	if filepath.Base(modules) != "modules" || filepath.Base(filepath.Dir(modules)) != "lib" {
		return "", fmt.Errorf("%s in %s resolves to %s, which is not a lib/modules directory", path.Dir(k.Modules), s.Root, modules)
	}
	return filepath.Dir(filepath.Dir(modules)), nil
}

// moduleTreesIn lists the kernel module trees in root, newest first.
func moduleTreesIn(root string) ([]kernel.Tree, error) {
	dirs, err := versionDirs(root)
	if err != nil {
		return nil, err
	}
	var out []kernel.Tree
	for _, d := range dirs {
		if hasModules(root, d.Dir) {
			out = append(out, d)
		}
	}
	return out, nil
}

// versionDirs lists the lib/modules/KVER directories of root under both
// names distributions use, newest first, resolving lib/modules inside the
// root: with lib -> usr/lib the one tree is listed once, under its first
// name.
func versionDirs(root string) ([]kernel.Tree, error) {
	var out []kernel.Tree
	seen := map[string]bool{}
	for _, tree := range moduleTrees {
		real, err := securejoin.Resolve(root, tree)
		if err != nil {
			return nil, err
		}
		if seen[real] {
			continue
		}
		seen[real] = true
		names, err := readDirInRoot(root, tree)
		if err != nil {
			return nil, err
		}
		for _, v := range names {
			out = append(out, kernel.Tree{Version: v, Dir: path.Join(tree, v)})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return kernel.CompareVersions(out[i].Version, out[j].Version) > 0 })
	return out, nil
}

// hasModules: the same markers the initramfs builder accepts, so an empty
// leftover directory is not taken for a kernel's modules.
func hasModules(root, dir string) bool {
	for _, marker := range []string{"kernel", "modules.order", "modules.dep"} {
		p, err := securejoin.Resolve(root, path.Join(dir, marker))
		if err != nil {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// readDirInRoot lists the names in rel (resolved inside root); a missing
// directory is empty.
func readDirInRoot(root, rel string) ([]string, error) {
	dir, err := securejoin.Resolve(root, rel)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", rel, root, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// headerVersionOf reads the release from an x86 kernel's boot header.
func headerVersionOf(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	return HeaderVersion(buf[:n]), nil
}

// HeaderVersion returns the kernel release written in an x86 bzImage's
// real-mode header, or "" if data is not one. The boot protocol
// (Documentation/arch/x86/boot.rst) puts "HdrS" at 0x202 and, from
// protocol 2.00, a pointer to a NUL-terminated version string, minus 0x200,
// at 0x20E; the string starts with the release, as `uname -r` prints it:
// "6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP ...".
func HeaderVersion(data []byte) string {
	if len(data) < 0x210 || string(data[0x202:0x206]) != "HdrS" || binary.LittleEndian.Uint16(data[0x206:]) < 0x200 {
		return ""
	}
	off := int(binary.LittleEndian.Uint16(data[0x20E:])) + 0x200
	if off >= len(data) {
		return ""
	}
	s := data[off:]
	if i := strings.IndexByte(string(s[:min(len(s), 256)]), 0); i >= 0 {
		s = s[:i]
	}
	fields := strings.Fields(string(s))
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}
