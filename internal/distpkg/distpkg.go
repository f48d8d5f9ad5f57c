// Package distpkg turns the tree that `make install DESTDIR=…` staged into
// a Debian package, an RPM and an Arch Linux package, each with its own
// distribution's dependencies, using goreleaser's nfpm as a library. It is
// the logic of `make package` (dist/package is its thin main).
//
// The staged tree is the one file list: whatever `make install` installs
// is packaged, in the same place in all three packages, so a file added to
// the install target is in every package without a second list to keep.
// The paths fit all three distributions: /usr/lib/dockroot,
// /usr/share/initramfs-tools, /usr/lib/dracut/modules.d,
// /usr/lib/initcpio and /usr/lib/systemd/system are where each looks.
//
// It is a build tool: only dist/package and tests import it. It must not
// import the boot (hook), internal/commands or cmd/..., and the binaries
// never link it.
package distpkg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/arch" // registers the packagers
	_ "github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm"
)

// Formats are the nfpm packagers `make package` runs, in order.
var Formats = []string{"deb", "rpm", "archlinux"}

// Name is the package name in every format.
const Name = "dockroot"

// Version is a package version made from `git describe`: Base is the
// release ("1.2.0", "0.0.0" before the first tag) and Meta what follows it
// for a build between releases ("git12.gabc1234", ".dirty" for
// uncommitted changes), "" for a tagged build.
type Version struct {
	Base, Meta string
}

func (v Version) String() string {
	if v.Meta == "" {
		return v.Base
	}
	return v.Base + "+" + v.Meta
}

var (
	describeTag  = regexp.MustCompile(`^v?([0-9]+\.[0-9]+\.[0-9]+)(?:-([0-9]+)-(g[0-9a-f]+))?(-dirty)?$`)
	describeHash = regexp.MustCompile(`^([0-9a-f]{4,40})(-dirty)?$`)
)

// ParseDescribe makes a Version from the output of `git describe --tags
// --always --dirty` and the number of commits (`git rev-list --count
// HEAD`), which orders untagged builds: "v1.2.0" is 1.2.0,
// "v1.2.0-3-gabc1234-dirty" 1.2.0+git3.gabc1234.dirty, and a bare hash
// "abc1234" (no tag yet) 0.0.0+git<commits>.gabc1234.
func ParseDescribe(describe string, commits int) (Version, error) {
	d := strings.TrimSpace(describe)
	if m := describeTag.FindStringSubmatch(d); m != nil {
		v := Version{Base: m[1]}
		var meta []string
		if m[2] != "" {
			meta = append(meta, "git"+m[2], m[3])
		}
		if m[4] != "" {
			meta = append(meta, "dirty")
		}
		v.Meta = strings.Join(meta, ".")
		return v, nil
	}
	if m := describeHash.FindStringSubmatch(d); m != nil {
		meta := []string{"git" + strconv.Itoa(commits), "g" + m[1]}
		if m[2] != "" {
			meta = append(meta, "dirty")
		}
		return Version{Base: "0.0.0", Meta: strings.Join(meta, ".")}, nil
	}
	return Version{}, fmt.Errorf("git describe gave %q; want a tag vX.Y.Z[-N-gHASH][-dirty] or a commit hash", describe)
}

// Options say what to package.
type Options struct {
	// Root is the staged tree: DESTDIR of `make install PREFIX=/usr`.
	Root string
	// OutDir receives the packages (created when missing).
	OutDir  string
	Version Version
	// Arch is the GOARCH the binaries in Root were built for.
	Arch string
	// Scripts is the directory holding the maintainer scripts
	// (postinstall.sh, preremove.sh, arch-postinstall.sh).
	Scripts string
	// MTime stamps every file and the packages' build date, so equal
	// inputs make equal packages (the commit's time; default now).
	MTime time.Time
}

// Package is one package Build wrote.
type Package struct {
	Format string // "deb", "rpm", "archlinux"
	File   string
}

// MissingFileError: the staged tree lacks a file every package must hold.
type MissingFileError struct {
	Root, Path string
}

func (e *MissingFileError) Error() string {
	return fmt.Sprintf("staged tree %s has no %s", e.Root, e.Path)
}

// Required are the files without which the package would not be dockroot.
var Required = []string{"usr/bin/dockroot", "usr/lib/dockroot/dockroot-init"}

// Build writes one package per format into opts.OutDir.
func Build(opts Options) ([]Package, error) {
	if opts.Arch == "" {
		opts.Arch = "amd64"
	}
	if opts.MTime.IsZero() {
		opts.MTime = time.Now()
	}
	contents, err := Contents(opts.Root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, err
	}
	var out []Package
	for _, format := range Formats {
		p, err := build(format, opts, contents)
		if err != nil {
			return out, fmt.Errorf("%s package: %w", format, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func build(format string, opts Options, contents files.Contents) (Package, error) {
	packager, err := nfpm.Get(format)
	if err != nil {
		return Package{}, err
	}
	info, err := Info(format, opts, contents)
	if err != nil {
		return Package{}, err
	}
	name := packager.ConventionalFileName(info)
	// ConventionalFileName may normalise the architecture in place;
	// Package does the same, so start from a fresh Info.
	if info, err = Info(format, opts, contents); err != nil {
		return Package{}, err
	}
	file := filepath.Join(opts.OutDir, name)
	f, err := os.Create(file + ".tmp")
	if err != nil {
		return Package{}, err
	}
	err = packager.Package(info, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(file+".tmp", file)
	}
	if err != nil {
		os.Remove(file + ".tmp")
		return Package{}, err
	}
	return Package{Format: format, File: file}, nil
}

// Info is the package metadata for one format. Each distribution gets the
// dependencies it needs to use the package: a generator to put the hook
// into an initramfs. btrfs-progs is not one: dockroot-init makes and
// rotates subvolumes with ioctls, and the host tool reads the store
// offline.
func Info(format string, opts Options, contents files.Contents) (*nfpm.Info, error) {
	script := func(name string) string {
		if opts.Scripts == "" {
			return ""
		}
		return filepath.Join(opts.Scripts, name)
	}
	info := &nfpm.Info{
		Name:     Name,
		Arch:     opts.Arch,
		Platform: "linux",
		// The version is made here, not parsed as semver by nfpm.
		VersionSchema:   "none",
		Version:         opts.Version.Base,
		VersionMetadata: opts.Version.Meta,
		Release:         "1",
		Maintainer:      "dockroot developers <dockroot@users.noreply.github.com>",
		Homepage:        "https://github.com/dockroot/dockroot",
		Description: "boot a Docker image as the machine's root filesystem, fresh every boot\n" +
			"dockroot-init snapshots an image's btrfs subvolume from Docker's (or rootful\n" +
			"Podman's) store into a fresh read-write layer at every boot, copies the\n" +
			"machine's own files over it and boots it. It runs as a hook inside the\n" +
			"distribution's initramfs (initramfs-tools, dracut, mkinitcpio) or as its own\n" +
			"initramfs (dockroot install). The hook does nothing unless docker_image= is\n" +
			"given, so installing the package never changes how a machine boots.",
		MTime: opts.MTime,
	}
	info.Contents = contents
	switch format {
	case "deb":
		info.Section = "admin"
		info.Priority = "optional"
		info.Depends = []string{"initramfs-tools | dracut"}
		info.Suggests = []string{"docker.io | podman"}
		// The initramfs-tools hook is part of every initrd built from
		// now on; rebuild the installed ones when it is installed,
		// upgraded or removed, as other hook packages do.
		info.Deb.Triggers.ActivateNoAwait = []string{"update-initramfs"}
		info.Scripts.PostInstall = script("postinstall.sh")
		info.Scripts.PreRemove = script("preremove.sh")
	case "rpm":
		info.Depends = []string{"dracut"}
		info.Suggests = []string{"podman"}
		info.RPM.Group = "System Environment/Base"
		info.RPM.Summary = "Boot a Docker image as the machine's root filesystem, fresh every boot"
		info.Scripts.PostInstall = script("postinstall.sh")
		info.Scripts.PreRemove = script("preremove.sh")
	case "archlinux":
		// Arch compares pkgver and ignores nfpm's metadata: put it in
		// the version itself ('+' is allowed, '-' is not).
		info.Version, info.VersionMetadata = opts.Version.String(), ""
		// No depends: mkinitcpio (or dracut) is optional, the hook
		// needs one of them only to be built into an initramfs, which
		// post_install says.
		info.ArchLinux.Packager = info.Maintainer
		// pkgdesc is one short line.
		info.Description, _, _ = strings.Cut(info.Description, "\n")
		info.Scripts.PostInstall = script("arch-postinstall.sh")
	default:
		return nil, fmt.Errorf("unknown package format %q (want one of %s)", format, strings.Join(Formats, ", "))
	}
	return info, nil
}

// Contents lists the staged tree as nfpm contents: every file and symlink
// at its path below the root, with the mode install gave it, owned by
// root. Directories are the distributions' (/usr/lib, …) except those
// named for dockroot, which the package owns, so that removing it removes
// them.
func Contents(root string) (files.Contents, error) {
	for _, r := range Required {
		if _, err := os.Lstat(filepath.Join(root, r)); err != nil {
			return nil, &MissingFileError{Root: root, Path: r}
		}
	}
	var out files.Contents
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		dst := "/" + filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		c := &files.Content{Destination: dst, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: fi.Mode().Perm()}}
		switch {
		case d.IsDir():
			if !strings.Contains(path.Base(dst), "dockroot") {
				return nil
			}
			c.Type = files.TypeDir
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			c.Type, c.Source, c.FileInfo.Mode = files.TypeSymlink, target, 0
		case d.Type().IsRegular():
			c.Source = p
		default:
			return fmt.Errorf("%s: a %s, not a file, directory or symlink", p, fi.Mode().Type())
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Destination < out[j].Destination })
	return out, nil
}

// Files lists the regular files and symlinks of a staged tree as absolute
// paths, sorted: what every package must hold.
func Files(root string) ([]string, error) {
	contents, err := Contents(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range contents {
		if c.Type != files.TypeDir {
			out = append(out, c.Destination)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no files in " + root)
	}
	return out, nil
}
