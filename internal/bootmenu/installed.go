package bootmenu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/atomicfile"
)

// Names in an installed tag's directory.
const (
	EntryFile     = "entry.json"
	KernelFile    = "vmlinuz"
	InitrdFile    = "initramfs.img"
	installSchema = 1
)

// Installed is one image tag whose kernel and initramfs `dockroot install`
// put under the boot directory: the content of DIR/<slug>/entry.json.
type Installed struct {
	Schema        int       `json:"schema"`
	Ref           string    `json:"ref"`            // familiar reference: "desk:stable"
	ImageID       string    `json:"image_id"`       // "sha256:<hex>" the kernel was taken from
	KernelVersion string    `json:"kernel_version"` // "6.1.0-28-amd64"
	Kernel        string    `json:"kernel"`         // file name in the directory, normally KernelFile
	Initrd        string    `json:"initrd"`         // file name in the directory, normally InitrdFile
	Installed     time.Time `json:"installed"`
	// Store is the kind of image store the image was found in
	// (layout.StoreGraphDriver, StoreContainerd, StorePodman); its entry
	// names it with dockroot.store= unless it is Docker's classic store,
	// the init's first choice. "" in files written before stores had kinds.
	Store string `json:"store,omitempty"`

	// Dir is the directory's name under the boot directory (the slug).
	// ReadInstalled and ReadEntry set it; it is not stored.
	Dir string `json:"-"`
}

// Slug is the directory name, and the base of the boot entry id, for the
// image reference ref: lower case, '/' → '_', ':' and '@' → '-', anything
// else outside [a-z0-9._-] → '-'. Lower case because an ESP is FAT, where
// "Desk" and "desk" are the same name; WriteInstalled refuses the rare
// collision this causes instead of overwriting another tag's kernel.
func Slug(ref string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(ref) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		case r == '/':
			b.WriteByte('_')
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), ".")
	if s == "" {
		s = "-"
	}
	return s
}

// InstalledDir is where `dockroot install` puts ref's files under bootDir.
func InstalledDir(bootDir, ref string) string {
	return filepath.Join(bootDir, Slug(ref))
}

// WriteInstalled records in as installed: it writes InstalledDir's
// entry.json atomically (temporary file, fsync, rename), after the kernel
// and initramfs are in place there, which it checks. A directory already
// recording another reference is refused.
func WriteInstalled(bootDir string, in Installed) (string, error) {
	if in.Ref == "" {
		return "", errors.New("record installed kernel: no image reference")
	}
	if in.Kernel == "" {
		in.Kernel = KernelFile
	}
	if in.Initrd == "" {
		in.Initrd = InitrdFile
	}
	in.Schema = installSchema
	if in.Installed.IsZero() {
		in.Installed = time.Now().UTC()
	}
	dir := InstalledDir(bootDir, in.Ref)
	path := filepath.Join(dir, EntryFile)
	if err := checkFileName(in.Kernel); err != nil {
		return "", fmt.Errorf("record installed kernel in %s: kernel %w", path, err)
	}
	if err := checkFileName(in.Initrd); err != nil {
		return "", fmt.Errorf("record installed kernel in %s: initrd %w", path, err)
	}
	if old, err := ReadEntry(dir); err == nil && old.Ref != in.Ref {
		return "", fmt.Errorf("record installed kernel for %s: %s already holds %s (their directory names are the same, %s, on a case-insensitive ESP): "+
			"remove %s with `rm -r %s` if %s is no longer wanted, or retag one of them", in.Ref, dir, old.Ref, Slug(in.Ref), old.Ref, dir, old.Ref)
	}
	for _, f := range []string{in.Kernel, in.Initrd} {
		if err := checkBootFile(filepath.Join(dir, f)); err != nil {
			return "", fmt.Errorf("record installed kernel for %s: %w", in.Ref, err)
		}
	}
	data, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// ReadInstalled lists the tags installed under bootDir, sorted by Ref.
// Directories without entry.json are not dockroot's and are skipped; an
// unreadable entry.json or a missing kernel is an error that says to
// install again.
func ReadInstalled(bootDir string) ([]Installed, error) {
	des, err := os.ReadDir(bootDir)
	if err != nil {
		return nil, fmt.Errorf("read boot directory %s: %w", bootDir, err)
	}
	var out []Installed
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		dir := filepath.Join(bootDir, de.Name())
		in, err := ReadEntry(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, f := range []string{in.Kernel, in.Initrd} {
			if err := checkBootFile(filepath.Join(dir, f)); err != nil {
				return nil, fmt.Errorf("installed %s: %w; install it again: dockroot install %s --boot-dir %s", in.Ref, err, in.Ref, bootDir)
			}
		}
		out = append(out, *in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// ReadEntry reads the entry.json of one installed tag's directory dir and
// sets Dir to its name. A directory without entry.json gives an error
// that errors.Is fs.ErrNotExist: it is not (or not yet) dockroot's.
// Unknown fields and another schema are errors, so that a newer dockroot's
// record is not half-understood; the kernel and initramfs named are not
// checked (ReadInstalled does).
func ReadEntry(dir string) (*Installed, error) {
	path := filepath.Join(dir, EntryFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var in Installed
	if err := atomicfile.DecodeStrict(data, &in); err != nil {
		return nil, fmt.Errorf("read %s: %w; remove its directory and run dockroot install again", path, err)
	}
	switch {
	case in.Schema != installSchema:
		return nil, fmt.Errorf("read %s: schema %d, this dockroot reads schema %d; run this dockroot's install again", path, in.Schema, installSchema)
	case in.Ref == "":
		return nil, fmt.Errorf("read %s: no \"ref\"; remove its directory and run dockroot install again", path)
	}
	for _, f := range []string{in.Kernel, in.Initrd} {
		if err := checkFileName(f); err != nil {
			return nil, fmt.Errorf("%s: file %w", path, err)
		}
	}
	in.Dir = filepath.Base(dir)
	return &in, nil
}

// checkFileName accepts a plain file name of loader-safe characters.
func checkFileName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || !loaderSafe(name) {
		return fmt.Errorf("name %q: want a plain file name of letters, digits and . _ - + @", name)
	}
	return nil
}

func checkBootFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return fmt.Errorf("%s is not a non-empty regular file", path)
	}
	return nil
}
