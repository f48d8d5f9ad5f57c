package containerd

import (
	"fmt"
	"strings"
	"time"

	"github.com/dockroot/dockroot/snapshot"
)

// DBError says that a bbolt database of the store (containerd's metadata
// database or the btrfs snapshotter's) could not be read: truncated,
// damaged, or not a bbolt file. It matches snapshot.ErrCorrupt.
type DBError struct {
	Path string // the database file, in full
	Err  error  // what bbolt (or the read) said
}

func (e *DBError) Error() string {
	return fmt.Sprintf("containerd database %s cannot be read: %v: %v", e.Path, e.Err, snapshot.ErrCorrupt)
}
func (e *DBError) Unwrap() error        { return e.Err }
func (e *DBError) Is(target error) bool { return target == snapshot.ErrCorrupt }

// LockedError says that another process (a running containerd) held the
// database's lock for longer than Timeout, and no private copy could be
// read instead.
type LockedError struct {
	Path    string
	Timeout time.Duration
	Err     error // why the copy failed, when one was tried
}

func (e *LockedError) Error() string {
	s := fmt.Sprintf("containerd database %s is locked by another process (a running containerd) for more than %v", e.Path, e.Timeout)
	if e.Err != nil {
		s += fmt.Sprintf(", and reading a copy failed: %v", e.Err)
	}
	return s
}
func (e *LockedError) Unwrap() error { return e.Err }

// BlobError says that a content blob the image needs (its index, manifest
// or config) is missing from the content store, or is not the blob its
// digest names. It matches snapshot.ErrCorrupt.
type BlobError struct {
	Store   string // the store, for the message
	Ref     string // the image reference being resolved
	Digest  string // the blob's digest
	What    string // "index", "manifest", "config"
	Path    string // the blob file, in full
	Missing bool   // the file does not exist
	Err     error
}

func (e *BlobError) Error() string {
	if e.Missing {
		return fmt.Sprintf("image %s: its %s blob %s is missing from %s (%s): %v", e.Ref, e.What, e.Digest, e.Store, e.Path, snapshot.ErrCorrupt)
	}
	return fmt.Sprintf("image %s: its %s blob %s in %s (%s): %v: %v", e.Ref, e.What, e.Digest, e.Store, e.Path, e.Err, snapshot.ErrCorrupt)
}
func (e *BlobError) Unwrap() error        { return e.Err }
func (e *BlobError) Is(target error) bool { return target == snapshot.ErrCorrupt }

// PlatformError says that the image's index has no manifest for the
// platform being booted.
type PlatformError struct {
	Store  string
	Ref    string
	Digest string   // the index's digest
	Want   string   // "linux/amd64"
	Have   []string // the platforms the index lists, sorted
}

func (e *PlatformError) Error() string {
	have := "none"
	if len(e.Have) > 0 {
		have = strings.Join(e.Have, ", ")
	}
	return fmt.Sprintf("image %s in %s has no manifest for %s (its index %s lists: %s)", e.Ref, e.Store, e.Want, e.Digest, have)
}

// NotUnpackedError says that the image's layers are not unpacked as a
// committed snapshot of containerd's btrfs snapshotter: the image is in
// the content store, but no subvolume holds its root filesystem.
type NotUnpackedError struct {
	Store   string
	Ref     string
	ChainID string // the top layer's chain ID, the snapshot's name
	// UnpackedFor lists the other snapshotters the image is unpacked for
	// (from the config blob's gc.ref.snapshot labels), sorted.
	UnpackedFor []string
	// Reason is set when a snapshot exists but is not usable ("is still
	// being written", "is not in the snapshotter's database").
	Reason string
}

func (e *NotUnpackedError) Error() string {
	s := fmt.Sprintf("image %s in %s is not unpacked for the btrfs snapshotter (no committed snapshot %s)", e.Ref, e.Store, e.ChainID)
	if e.Reason != "" {
		s = fmt.Sprintf("image %s in %s: its btrfs snapshot %s %s", e.Ref, e.Store, e.ChainID, e.Reason)
	}
	if len(e.UnpackedFor) > 0 {
		s += fmt.Sprintf("; it is unpacked for %s only", strings.Join(e.UnpackedFor, ", "))
	}
	return s
}
