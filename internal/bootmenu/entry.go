package bootmenu

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"

	"github.com/dockroot/dockroot/internal/layout"
)

// PreviousLayerParam is the kernel parameter of the previous-layer entry:
// the init mounts NAME.prev.1 (NAME from rootflags=subvol=) as it was left,
// and neither resolves the image, nor makes a fresh layer, nor rotates.
const PreviousLayerParam = "dockroot.layer=previous"

// IDPrefix starts the id of every entry this package makes, so that the
// menu verb can tell its own BLS files from the user's.
const IDPrefix = "dockroot-"

// PreviousID is the id of the previous-layer entry.
const PreviousID = IDPrefix + "previous-layer"

// Entry is one boot-menu entry, independent of the bootloader.
type Entry struct {
	ID      string   // unique, filename-safe ([A-Za-z0-9._-]): a GRUB --id, a BLS file name
	Title   string   // shown in the menu; any printable text
	Version string   // kernel version (BLS "version")
	Kernel  string   // absolute path as the bootloader sees it, '/'-separated
	Initrd  string   // likewise
	Options []string // kernel parameters, unquoted: "docker_image=desk:stable", "toplayer_path=my dir"
	SortKey string   // BLS "sort-key": entries sort by it

	Ref      string // the image reference it boots; "" for the previous-layer entry
	ImageID  string // the image the kernel was installed from
	Default  bool   // the entry booted when nobody chooses
	Previous bool   // boots the previous layer as it was left
}

// Params are the kernel parameters and paths shared by every entry.
type Params struct {
	Root       string `json:"root"`                  // root=: the btrfs device spec, "LABEL=linux"
	RWLayer    string `json:"rwlayer"`               // rootflags=subvol=: the rw layer NAME
	DockerPath string `json:"docker_path,omitempty"` // docker_path=, relative to the btrfs top level; "" leaves the init's default
	// PodmanPath and ContainerdPath are podman_path= and containerd_path=,
	// given only on the entries of images from that store; "" leaves the
	// init's default.
	PodmanPath     string   `json:"podman_path,omitempty"`
	ContainerdPath string   `json:"containerd_path,omitempty"`
	Toplayer       string   `json:"toplayer,omitempty"`      // toplayer=; "" for the root device
	ToplayerPath   string   `json:"toplayer_path,omitempty"` // toplayer_path=; "" for no top layer
	Extra          []string `json:"extra,omitempty"`         // more kernel parameters, appended as given ("quiet", "console=ttyS0")
	// LoaderPath is the boot directory as the bootloader sees it: absolute,
	// from the root of the filesystem the bootloader reads ("/dockroot",
	// "/@/boot/dockroot" on a btrfs subvolume). See LoaderPath.
	LoaderPath string `json:"loader_path"`
	// Default is the reference of the default entry; "" makes the first
	// (in Ref order) the default.
	Default string `json:"default,omitempty"`
}

// Entries makes one entry per installed tag, in Ref order, then the
// previous-layer entry, which boots with the default entry's kernel (the
// kernel the machine most likely booted last; a previous layer of another
// image needs that image's kernel to find matching modules).
func Entries(installed []Installed, p Params) ([]Entry, error) {
	if len(installed) == 0 {
		return nil, errors.New("no installed kernels")
	}
	if p.Root == "" {
		return nil, errors.New("no root= device: give the btrfs device that holds the Docker data root (LABEL=, UUID=, /dev/NAME)")
	}
	if p.RWLayer == "" {
		return nil, errors.New("no rw layer name: give the rootflags=subvol= NAME the layers are made under")
	}
	lp := p.LoaderPath
	if lp == "" {
		lp = "/"
	}
	if !strings.HasPrefix(lp, "/") || !loaderSafe(strings.ReplaceAll(lp, "/", "")) {
		return nil, fmt.Errorf("loader path %q: want an absolute path of letters, digits and . _ - + @ (the boot directory as the bootloader sees it)", lp)
	}
	lp = path.Clean(lp)

	def := -1
	for i, in := range installed {
		if in.Ref == p.Default {
			def = i
		}
	}
	switch {
	case p.Default == "":
		def = 0
	case def < 0:
		refs := make([]string, len(installed))
		for i, in := range installed {
			refs[i] = in.Ref
		}
		return nil, fmt.Errorf("default %q is not installed; installed: %s", p.Default, strings.Join(refs, ", "))
	}

	seen := map[string]string{}
	var out []Entry
	for i, in := range installed {
		dir := in.Dir
		if dir == "" {
			dir = Slug(in.Ref)
		}
		id := IDPrefix + dir
		if other, dup := seen[id]; dup {
			return nil, fmt.Errorf("installed %s and %s share the entry id %s: remove one of their directories", other, in.Ref, id)
		}
		seen[id] = in.Ref
		opts := append(baseOptions(p), storeOptions(in, p)...)
		opts = append(opts, "docker_image="+in.Ref)
		opts = append(opts, "rw")
		opts = append(opts, p.Extra...)
		out = append(out, Entry{
			ID:      id,
			Title:   entryTitle(in),
			Version: in.KernelVersion,
			Kernel:  path.Join(lp, dir, in.Kernel),
			Initrd:  path.Join(lp, dir, in.Initrd),
			Options: opts,
			SortKey: "dockroot-1",
			Ref:     in.Ref,
			ImageID: in.ImageID,
			Default: i == def,
		})
	}
	out[def].SortKey = "dockroot-0"

	// The previous layer keeps docker_image= so that its configuration is
	// as valid as the others' and an init without dockroot.layer= support
	// still boots something sensible: a fresh layer of the default image.
	d := out[def]
	prev := Entry{
		ID:       PreviousID,
		Title:    fmt.Sprintf("dockroot previous layer (%s as left, kernel of %s)", path.Base(p.RWLayer)+".prev.1", d.Ref),
		Version:  d.Version,
		Kernel:   d.Kernel,
		Initrd:   d.Initrd,
		SortKey:  "dockroot-2",
		ImageID:  d.ImageID,
		Previous: true,
	}
	prev.Options = append(append(baseOptions(p), storeOptions(installed[def], p)...), "docker_image="+d.Ref, "rw", PreviousLayerParam)
	prev.Options = append(prev.Options, p.Extra...)
	out = append(out, prev)

	for _, e := range out {
		if err := e.Validate(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func baseOptions(p Params) []string {
	opts := []string{"root=" + p.Root, "rootflags=subvol=" + p.RWLayer}
	if p.DockerPath != "" {
		opts = append(opts, "docker_path="+p.DockerPath)
	}
	if p.Toplayer != "" {
		opts = append(opts, "toplayer="+p.Toplayer)
	}
	if p.ToplayerPath != "" {
		opts = append(opts, "toplayer_path="+p.ToplayerPath)
	}
	return opts
}

// storeOptions are the parameters that send the init to the store in's
// image came from: none for Docker's classic store (the init looks there
// first, as the ancestor did), else dockroot.store= and the store's path
// when one was given, so that an image in one store is never confused
// with a same-named one in another.
func storeOptions(in Installed, p Params) []string {
	switch in.Store {
	case "", layout.StoreGraphDriver:
		return nil
	case layout.StorePodman:
		if p.PodmanPath != "" {
			return []string{"dockroot.store=" + in.Store, "podman_path=" + p.PodmanPath}
		}
	case layout.StoreContainerd:
		if p.ContainerdPath != "" {
			return []string{"dockroot.store=" + in.Store, "containerd_path=" + p.ContainerdPath}
		}
	}
	return []string{"dockroot.store=" + in.Store}
}

// Validate checks what every renderer needs: a filename-safe id, a
// one-line printable title, loader paths of safe characters, and kernel
// parameters the kernel can read back (see KernelCmdline).
func (e Entry) Validate() error {
	if e.ID == "" || !idSafe(e.ID) {
		return fmt.Errorf("entry id %q: want letters, digits and . _ - only", e.ID)
	}
	if e.Title == "" || !printable(e.Title) {
		return fmt.Errorf("entry %s: title %q: want one line of printable text", e.ID, e.Title)
	}
	if !printable(e.Version) {
		return fmt.Errorf("entry %s: version %q: want one line of printable text", e.ID, e.Version)
	}
	for _, f := range []struct{ what, p string }{{"kernel", e.Kernel}, {"initrd", e.Initrd}} {
		if !strings.HasPrefix(f.p, "/") || path.Clean(f.p) != f.p || !loaderSafe(strings.ReplaceAll(f.p, "/", "")) {
			return fmt.Errorf("entry %s: %s path %q: want a clean absolute path of letters, digits and . _ - + @ (bootloaders differ on quoting anything else)", e.ID, f.what, f.p)
		}
	}
	if e.SortKey != "" && !idSafe(e.SortKey) {
		return fmt.Errorf("entry %s: sort key %q: want letters, digits and . _ - only", e.ID, e.SortKey)
	}
	if _, err := KernelCmdline(e.Options); err != nil {
		return fmt.Errorf("entry %s: %w", e.ID, err)
	}
	return nil
}

// KernelCmdline joins kernel parameters as the kernel reads them back: a
// parameter holding a space or tab becomes key="value" (or "param" without
// '='); the kernel strips those quotes (next_arg). The kernel has no
// escape character, so a parameter holding '"' cannot be written.
func KernelCmdline(params []string) (string, error) {
	parts := make([]string, 0, len(params))
	for _, p := range params {
		if err := checkParam(p); err != nil {
			return "", err
		}
		if !strings.ContainsAny(p, " \t") {
			parts = append(parts, p)
			continue
		}
		if k, v, ok := strings.Cut(p, "="); ok && !strings.ContainsAny(k, " \t") {
			parts = append(parts, k+`="`+v+`"`)
			continue
		}
		parts = append(parts, `"`+p+`"`)
	}
	return strings.Join(parts, " "), nil
}

func checkParam(p string) error {
	switch {
	case p == "":
		return errors.New("empty kernel parameter")
	case strings.ContainsRune(p, '"'):
		return fmt.Errorf("kernel parameter %q holds a double quote, which the kernel command line cannot carry (it has no escape character)", p)
	case !printable(p):
		return fmt.Errorf("kernel parameter %q holds a control character", p)
	case strings.HasPrefix(p, "=") || strings.HasPrefix(p, " ") || strings.HasPrefix(p, "\t"):
		return fmt.Errorf("kernel parameter %q does not start with a name", p)
	}
	return nil
}

// printable: one line, no control characters (newlines would start a new
// directive in every loader's configuration).
func printable(s string) bool {
	for _, r := range s {
		if r != ' ' && r != '\t' && !unicode.IsPrint(r) || r == unicode.ReplacementChar {
			return false
		}
	}
	return true
}

func idSafe(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// loaderSafe: characters every loader takes unquoted in a path ('@' for
// btrfs subvolumes named like Ubuntu's "@").
func loaderSafe(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '+' || r == '@') {
			return false
		}
	}
	return true
}

// entryTitle is "dockroot REF", with the store named when it is not
// Docker's classic one, so that the same reference in two stores reads
// apart in the menu.
func entryTitle(in Installed) string {
	if in.Store == "" || in.Store == layout.StoreGraphDriver {
		return "dockroot " + in.Ref
	}
	return fmt.Sprintf("dockroot %s (%s)", in.Ref, in.Store)
}
