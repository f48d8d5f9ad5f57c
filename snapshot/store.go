package snapshot

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
)

// Image is an image resolved to the btrfs subvolume that holds its complete
// root filesystem.
type Image struct {
	// Ref is the reference it was resolved from, normalised: the full form
	// "docker.io/library/x:1", or "sha256:<hex>" when resolved by image ID.
	Ref     string
	ID      string   // "sha256:<64 hex>", the sha256 of the image config
	ChainID string   // "sha256:<64 hex>" of the top layer; empty without layers
	DiffIDs []string // rootfs.diff_ids, bottom layer first
	// Subvolume is the image's top-layer subvolume, relative to the btrfs
	// top level: "var/lib/docker/btrfs/subvolumes/<cache-id>".
	Subvolume string
	Created   time.Time
	// Tags is every familiar reference to this image ID (tags, and
	// name@sha256: digests after a pull by digest), sorted.
	Tags []string
	// Store is the kind of store the image was found in
	// (layout.StoreGraphDriver, StoreContainerd, StorePodman); package
	// stores sets it, so that an image's identity is its store and its ID.
	Store string
	// Problem says why the image cannot be booted (no layers, corrupt
	// config, ...). Only List sets it; Resolve returns such problems as
	// errors. Empty means bootable.
	Problem string
}

// Store resolves image references to subvolumes in one kind of image store.
// Every implementation must pass the suite in snapshot/storetest.
type Store interface {
	// Name is the store kind, as dockroot.store= names it.
	Name() string
	// Resolve accepts name[:tag], name@sha256:…, a full image ID or a unique
	// image-ID prefix of at least MinIDPrefix hex digits. An unknown image is
	// a *NotFoundError listing the tags that exist.
	Resolve(ref string) (*Image, error)
	// List returns every tagged image, one entry per tag, sorted by Ref.
	List() ([]Image, error)
}

// Errors that callers and tests tell apart with errors.Is.
var (
	// ErrNotFound: no image matches the reference (see *NotFoundError).
	ErrNotFound = errors.New("image not found")
	// ErrNoLayers: the image has no filesystem layers to boot.
	ErrNoLayers = errors.New("image has no filesystem layers")
	// ErrCorrupt: the store's files disagree with each other or with their
	// content digests.
	ErrCorrupt = errors.New("image store is corrupt")
	// ErrUnsupportedStore: the Docker data root does not hold a store this
	// package can read (another storage driver, containerd image store).
	ErrUnsupportedStore = errors.New("unsupported image store")
)

// NotFoundError says that Ref matches no image in Store and lists the tags
// that do exist. Like every error of the stores, it carries its operands and
// no advice: the boot adds what to set on the kernel command line, the host
// tool what to pass on its own.
type NotFoundError struct {
	Ref       string   // as given
	Store     string   // where it was looked for, for the message
	Available []string // familiar tags in the store, sorted
	Hint      string   // what else the store knows about Ref (e.g. "it names another image")
}

func (e *NotFoundError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "image %q not found in %s", e.Ref, e.Store)
	if e.Hint != "" {
		fmt.Fprintf(&b, " (%s)", e.Hint)
	}
	if len(e.Available) == 0 {
		b.WriteString("; the store has no tagged images")
	} else {
		fmt.Fprintf(&b, "; tagged images: %s", strings.Join(e.Available, ", "))
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotFound) true for a *NotFoundError.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// DataRootError says that the store root at Path (a Docker data root, or
// a Podman graph root when Kind is layout.StorePodman) holds no image store
// dockroot can read. Reason says what is there instead and, when it is the
// engine's own configuration that must change, how (that advice holds
// wherever the path was given). Missing is true when nothing there looks
// like such a store at all, so the path itself is the likely mistake.
type DataRootError struct {
	Path    string
	Reason  string // follows the path: ": <cause>" or " uses the … driver …"
	Missing bool
	Err     error  // ErrUnsupportedStore, or the error that reading Path gave
	Kind    string // the store kind looked for; "" is layout.StoreGraphDriver
}

func (e *DataRootError) Error() string { return e.What() + " " + e.Path + e.Reason }
func (e *DataRootError) Unwrap() error { return e.Err }

// What names the kind of root Path is: "Docker data root", "containerd
// root" or "Podman graph root".
func (e *DataRootError) What() string {
	switch e.Kind {
	case layout.StorePodman:
		return "Podman graph root"
	case layout.StoreContainerd:
		return "containerd root"
	}
	return "Docker data root"
}

// FamiliarTags returns the sorted familiar form of each ref.
func FamiliarTags(refs []Ref) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.Familiar())
	}
	sort.Strings(out)
	return out
}

// StoreFileError says that a file of the image store was not read because
// it is not what the store writes there: a symbolic link (or a file under
// one), something other than a regular file (a fifo, a device), or larger
// than any such file the store writes. It matches ErrCorrupt.
type StoreFileError struct {
	Path   string // the file, in full
	Limit  int64  // the most bytes read from this kind of file; 0 for a directory
	Reason string // "is a symbolic link or lies under one", "is a fifo, not a regular file", …
	Err    error  // the system call's error, when there was one
}

func (e *StoreFileError) Error() string {
	if e.Limit == 0 {
		return fmt.Sprintf("store file %s %s: %v", e.Path, e.Reason, ErrCorrupt)
	}
	return fmt.Sprintf("store file %s %s (read limit %d bytes): %v", e.Path, e.Reason, e.Limit, ErrCorrupt)
}

// Is makes errors.Is(err, ErrCorrupt) true for a *StoreFileError.
func (e *StoreFileError) Is(target error) bool { return target == ErrCorrupt }
func (e *StoreFileError) Unwrap() error        { return e.Err }
