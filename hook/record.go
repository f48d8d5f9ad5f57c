package hook

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dockroot/dockroot/toplayer"
)

// RecordSchema is the version of boot.json's layout; bump it when a field
// changes meaning, not when one is added.
const RecordSchema = 1

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

	// The image; empty when the boot fell back before resolving it.
	Ref            string `json:"ref,omitempty"`
	ImageID        string `json:"image_id,omitempty"`
	ChainID        string `json:"chain_id,omitempty"`
	ImageSubvolume string `json:"image_subvolume,omitempty"`

	Layer    LayerRecord     `json:"rw_layer"`
	Toplayer *ToplayerRecord `json:"toplayer,omitempty"`
	Fallback *Fallback       `json:"fallback,omitempty"`

	Init     []string `json:"init"` // argv exec'ed in the new root
	ReadOnly bool     `json:"read_only"`
	Warnings []string `json:"warnings,omitempty"`
	// Steps are the timings of every step before this record was written
	// (so not "record the boot" itself, nor switch_root).
	Steps []Timing `json:"steps"`
}

// LayerRecord is the rw layer mounted as /.
type LayerRecord struct {
	Subvolume string   `json:"subvolume"` // relative to the btrfs top level, as in rootflags subvol=
	SubvolID  uint64   `json:"subvol_id,omitempty"`
	Fresh     bool     `json:"fresh"` // a new snapshot of the image (false after a fallback)
	Rotated   []string `json:"rotated,omitempty"`
	Deleted   []string `json:"deleted,omitempty"`
}

// ToplayerRecord is where the top layer came from and what it changed.
type ToplayerRecord struct {
	Device  string           `json:"device"` // "/dev/vdb (LABEL=top)", or the root device
	Path    string           `json:"path"`   // toplayer_path=, relative to that device's top level
	Summary toplayer.Summary `json:"summary"`
}

// Fallback says that dockroot.onfail=previous booted an older layer, and
// why. Its presence in boot.json is the loud part for programs.
type Fallback struct {
	Step   string `json:"step"`   // the step that failed
	Reason string `json:"reason"` // its error
	Layer  string `json:"layer"`  // the subvolume booted instead
}

// WriteRecord writes rec as JSON to path atomically: a temporary file in
// the same directory, fsync, rename. A reader never sees half a record.
func WriteRecord(path string, rec *Record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, ".boot.json.*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(0o644)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}
