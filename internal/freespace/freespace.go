// Package freespace checks, before dockroot-init creates a new rw layer,
// that the btrfs filesystem has room for it and for the system that boots
// on it. The boot sequence (package hook) calls CheckFreeSpace on the
// mounted top level before snapshotting; `dockroot status` can show Stat.
//
// Why statfs is enough: btrfs_statfs (fs/btrfs/super.c) reports as f_bavail
// the data space still allocatable under the filesystem's RAID profile, and
// reports 0 when the metadata space is full and its global reserve cannot
// be met, which is the ENOSPC a snapshot (a metadata-only operation) hits.
// So a low f_bavail covers both ways a layer creation can fail.
//
// The thresholds: a snapshot shares every data block with the image and
// costs a few metadata blocks, and the top layer is usually kilobytes; what
// needs room is the booted system (logs, package caches, Docker itself).
// Below MinFree the boot does not create a layer: it fails the step before
// touching anything, so dockroot.onfail=previous boots the existing layer
// untouched. Below WarnFree it creates the layer and warns on the console.
//
// It is a leaf: it imports nothing of dockroot's, and says what it
// measured, not what to do about it.
package freespace

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Thresholds for the space free on the btrfs filesystem (see package doc).
const (
	MinFree  uint64 = 64 << 20  // refuse to create a new layer below this
	WarnFree uint64 = 256 << 20 // warn below this
)

// ErrLowSpace matches *LowSpaceError.
var ErrLowSpace = errors.New("not enough free space")

// Space is what statfs says about a filesystem, in bytes.
type Space struct {
	Free  uint64 // available to unprivileged writers (f_bavail)
	Total uint64
	Btrfs bool // f_type is BTRFS_SUPER_MAGIC
}

// Stat reads the space of the filesystem mounted at path.
func Stat(path string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return Space{Free: st.Bavail * bs, Total: st.Blocks * bs, Btrfs: st.Type == unix.BTRFS_SUPER_MAGIC}, nil
}

// LowSpaceError says the filesystem has less free space than needed. What
// to free is the caller's to say (the boot says it once for every
// full-filesystem failure).
type LowSpaceError struct {
	Path  string
	Space Space
	Need  uint64
}

func (e *LowSpaceError) Error() string {
	return fmt.Sprintf("the btrfs filesystem at %s has %s free of %s, less than the %s dockroot needs to create a new rw layer; nothing was changed",
		e.Path, Human(e.Space.Free), Human(e.Space.Total), Human(e.Need))
}

// Is makes errors.Is(err, ErrLowSpace) true.
func (e *LowSpaceError) Is(target error) bool { return target == ErrLowSpace }

// CheckFreeSpace returns the space of the filesystem mounted at top, and a
// *LowSpaceError if less than need bytes are free. The boot passes MinFree,
// and warns with Warning when the space is below WarnFree.
func CheckFreeSpace(top string, need uint64) (Space, error) {
	sp, err := Stat(top)
	if err != nil {
		return sp, err
	}
	if sp.Free < need {
		return sp, &LowSpaceError{Path: top, Space: sp, Need: need}
	}
	return sp, nil
}

// Warning returns a console line if sp is below WarnFree, else "".
func Warning(top string, sp Space) string {
	if sp.Free >= WarnFree {
		return ""
	}
	return fmt.Sprintf("warning: the btrfs filesystem at %s has only %s free of %s: the booted system may run out of space; "+
		"remove unused images (docker image prune) and old rw layers (dockroot gc, or lower dockroot.keep=)",
		top, Human(sp.Free), Human(sp.Total))
}

// Human formats n bytes in binary units, as `btrfs filesystem df` does.
func Human(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v >= 100 {
		return fmt.Sprintf("%.0f %ciB", v, "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
