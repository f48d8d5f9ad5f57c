// Package bootrecord is the schema of /run/dockroot/boot.json: what a boot
// booted and how long each step took. dockroot-init writes it just before
// switch_root; the host tool's status, mark-good, retry and gc read it.
//
// It is a leaf both binaries import: it must not import the boot (hook),
// the host tool's packages or any store.
package bootrecord

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dockroot/dockroot/internal/atomicfile"
	"github.com/dockroot/dockroot/toplayer"
)

// Schema is the version of boot.json's layout; bump it when a field
// changes meaning, not when one is added.
const Schema = 1

// Record is /run/dockroot/boot.json: what this boot booted and how long
// each step took. It is written just before switch_root and stays visible
// in the booted system because /run is moved into it, for `dockroot status`,
// benchmarks and people asking "what am I running?".
type Record struct {
	Schema  int       `json:"schema"`
	Version string    `json:"dockroot_version"`
	Time    time.Time `json:"time"`
	Cmdline string    `json:"cmdline"`

	RootDevice string `json:"root_device"` // e.g. "/dev/vda (LABEL=linux)"
	// RootDevicePath is the root device's node, "/dev/vda": what `dockroot
	// mark-good` mounts to reach the btrfs top level.
	RootDevicePath string `json:"root_device_path,omitempty"`

	// LayerMode is how the rw layer was chosen, as dockroot.layer= names
	// it: "new" (a fresh snapshot of the image), "previous" (NAME.prev.1)
	// or "current" (NAME), both as they were left. Layer.Reason says why.
	LayerMode string `json:"layer"`

	// The image; empty when an existing layer booted as it was left
	// (Layer.Image then names the image it was made from).
	Ref            string `json:"ref,omitempty"`
	ImageID        string `json:"image_id,omitempty"`
	ChainID        string `json:"chain_id,omitempty"`
	ImageSubvolume string `json:"image_subvolume,omitempty"`
	// ImageStore is the store the image was found in, as dockroot.store=
	// names it (graphdriver, containerd, podman): with ImageID, the
	// image's identity.
	ImageStore string `json:"image_store,omitempty"`

	Layer    Layer     `json:"rw_layer"`
	Toplayer *Toplayer `json:"toplayer,omitempty"`
	Fallback *Fallback `json:"fallback,omitempty"`
	// Hibernation is set when a hibernation image kept the layer.
	Hibernation *Hibernation `json:"hibernation,omitempty"`
	// BootCount is boot counting's decision; nil when it did not run
	// (dockroot.tries=0, or an existing layer booted).
	BootCount *BootCount `json:"boot_count,omitempty"`

	Init     []string `json:"init"` // argv exec'ed in the new root
	ReadOnly bool     `json:"read_only"`
	Warnings []string `json:"warnings,omitempty"`
	// Steps are the timings of every step before this record was written
	// (so not "record the boot" itself, nor switch_root).
	Steps []Timing `json:"steps"`
}

// Layer is the rw layer mounted as /.
type Layer struct {
	Subvolume string `json:"subvolume"` // relative to the btrfs top level, as in rootflags subvol=
	SubvolID  uint64 `json:"subvol_id,omitempty"`
	Fresh     bool   `json:"fresh"` // a new snapshot of the image (false for an existing layer)
	// Image is the ID of the image the layer was made from: this boot's,
	// or for an existing layer what dockroot's ownership record says.
	Image   string   `json:"image,omitempty"`
	Reason  string   `json:"reason,omitempty"` // why an existing layer booted as it was left
	Rotated []string `json:"rotated,omitempty"`
	Deleted []string `json:"deleted,omitempty"`
}

// Toplayer is where the top layer came from and what it changed.
type Toplayer struct {
	Device  string           `json:"device"` // "/dev/vdb (LABEL=top)", or the root device
	Path    string           `json:"path"`   // toplayer_path=, relative to that device's top level
	Summary toplayer.Summary `json:"summary"`
	// Base is the prepared base (relative to the top level) the layer was
	// made from when Reused, else the one saved for the next boot.
	Base   string `json:"base,omitempty"`
	Reused bool   `json:"reused,omitempty"` // the top layer was unchanged: nothing was copied
	// Skipped are the toplayer_path= elements not applied, "path: reason"
	// (a directory this machine does not have, a placeholder without a
	// value).
	Skipped []string `json:"skipped,omitempty"`
}

// Fallback says that dockroot.onfail=previous booted an older layer, and
// why. Its presence in boot.json is the loud part for programs.
type Fallback struct {
	Step   string `json:"step"`   // the step that failed
	Reason string `json:"reason"` // its error
	Layer  string `json:"layer"`  // the subvolume booted instead
}

// Hibernation says that the resume device holds a hibernation image,
// so the rw layer was kept as the hibernated system left it.
type Hibernation struct {
	Device string `json:"device"` // the swap device probed
	Reason string `json:"reason"`
	// ResumeError is why asking the kernel to resume failed, if it did.
	ResumeError string `json:"resume_error,omitempty"`
}

// ImageRef names an image by ID and the reference it was booted as.
type ImageRef struct {
	Ref string `json:"ref,omitempty"`
	ID  string `json:"id"`
}

// BootCount is what boot counting (dockroot.tries=) decided.
type BootCount struct {
	Tries     int       `json:"tries"`
	Attempt   int       `json:"attempt"` // this boot's count of Requested, 1-based; 0 when not counted
	Requested ImageRef  `json:"requested"`
	LastGood  *ImageRef `json:"last_good,omitempty"`
	// FellBack: Requested was booted Tries times without `dockroot
	// mark-good`, so this boot booted LastGood instead.
	FellBack bool   `json:"fell_back"`
	Message  string `json:"message"`
}

// Write writes rec as JSON to path atomically (atomicfile): a reader
// never sees half a record.
func Write(path string, rec *Record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, data, 0o644)
}

// Timing is the outcome of one step, as boot.json and benchmarks record it.
type Timing struct {
	Step   string `json:"step"`
	Desc   string `json:"desc"`
	MS     int64  `json:"ms"`
	Result string `json:"result"` // ResultOK, ResultFailed or ResultSkipped
	Error  string `json:"error,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Step results.
const (
	ResultOK      = "ok"
	ResultFailed  = "failed"
	ResultSkipped = "skipped"
)

// ErrNotDockroot: the file is JSON but not a boot record (no schema).
var ErrNotDockroot = errors.New("not a dockroot boot record")

// Read reads the boot record at path. A missing file is an error matching
// os.ErrNotExist; a record newer than this schema is returned as it is
// (Record.Schema says so), since fields are only ever added.
func Read(path string) (*Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("read the boot record %s: %w", path, err)
	}
	if rec.Schema == 0 {
		return nil, fmt.Errorf("read the boot record %s: no \"schema\": %w", path, ErrNotDockroot)
	}
	return &rec, nil
}
