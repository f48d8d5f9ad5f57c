package rwlayer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dockroot/dockroot/internal/atomicfile"
)

// The ownership record: the layers dockroot created, by subvolume ID and
// UUID, in a small JSON file on the btrfs top level. dockroot deletes or
// renames a subvolume only if it is listed here with both the same ID and
// UUID, so a subvolume the user made under a dockroot name is left alone.
const (
	LayerStateFile = "layers.json" // in layout.StateDir
	layerStateVer  = 1
)

// ErrCorruptState: the layer state file cannot be read, so ownership of
// existing layers cannot be proven and nothing is replaced or deleted.
var ErrCorruptState = errors.New("dockroot layer state file is unreadable")

// layerState is the content of layout.StateDir/LayerStateFile.
type layerState struct {
	Version int           `json:"version"`
	Layers  []layerRecord `json:"layers"`
	// Intents are snapshots about to be made. Written before the snapshot
	// ioctl so that a crash between it and recording the new subvolume's ID
	// leaves proof that the subvolume under that name is dockroot's.
	Intents []layerIntent `json:"intents,omitempty"`

	raw []byte // the file's content as last read or written; nil if none
}

type layerRecord struct {
	ID      uint64    `json:"id"`
	UUID    string    `json:"uuid"`
	Family  string    `json:"family"` // the rootflags subvol= NAME it rotates under
	Path    string    `json:"path"`   // where it was last seen, relative to the top level
	Created time.Time `json:"created"`
	Source  string    `json:"source"`          // image subvolume it was snapshotted from
	Image   string    `json:"image,omitempty"` // image ID, when the caller knew it
	// Live: the layer has been under NAME. A live layer found under the
	// temporary name was displaced by an interrupted commit and is kept
	// as the newest previous layer; a never-live one is deleted.
	Live bool `json:"live"`
	// Adopted: the ancestor hook's layer, adopted from NAME. Rotated out
	// of NAME to NAME.adopted, never deleted by the keep count.
	Adopted bool `json:"adopted,omitempty"`
}

type layerIntent struct {
	Path       string    `json:"path"`        // relative to the top level
	SourceUUID string    `json:"source_uuid"` // the new subvolume's parent UUID will be this
	Started    time.Time `json:"started"`
}

// parseLayerState decodes a state file. Unknown fields are rejected so that
// a newer dockroot's file is not silently half-understood.
func parseLayerState(data []byte) (*layerState, error) {
	var s layerState
	if err := atomicfile.DecodeStrict(data, &s); err != nil {
		return nil, err
	}
	if s.Version != layerStateVer {
		return nil, fmt.Errorf("version %d, this dockroot reads version %d", s.Version, layerStateVer)
	}
	seen := map[uint64]bool{}
	for i, r := range s.Layers {
		if r.ID < 256 || r.UUID == "" || r.Path == "" || r.Family == "" {
			return nil, fmt.Errorf("layer %d: id %d, uuid %q, path %q, family %q: need a subvolume id >= 256, a uuid, a path and a family", i, r.ID, r.UUID, r.Path, r.Family)
		}
		if seen[r.ID] {
			return nil, fmt.Errorf("layer %d: subvolume id %d listed twice", i, r.ID)
		}
		seen[r.ID] = true
	}
	return &s, nil
}

// loadLayerState reads the state file at path; a missing file is an empty
// state (first boot). A state file that cannot be parsed is replaced by its
// backup (path + ".bak", what the last save wrote; see write), with a
// warning through logf. Only when the backup is unusable too is the state
// ErrCorruptState.
func loadLayerState(path string, logf func(string, ...any)) (*layerState, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &layerState{Version: layerStateVer}, nil
	}
	if err != nil {
		return nil, layerOpError("read layer state", path, err)
	}
	s, err := parseLayerState(data)
	if err == nil {
		s.raw = data
		return s, nil
	}
	bak := path + layerStateBackupSuffix
	bdata, berr := os.ReadFile(bak)
	if berr == nil {
		var b *layerState
		if b, berr = parseLayerState(bdata); berr == nil {
			if logf != nil {
				logf("rw layer: WARNING: %s is unreadable (%v); using its backup %s (%d layers recorded)", path, err, bak, len(b.Layers))
			}
			// raw stays nil: the next save rewrites the state file.
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: %s: %w (backup %s: %v); dockroot cannot tell which layers it created, so it replaces and deletes none: "+
		"restore the file, or remove it and move the existing layers away once (they then count as not dockroot's)",
		ErrCorruptState, path, err, bak, berr)
}

// save writes s to path crash-atomically: a temporary file in the same
// directory, fsync of that file, rename over path. A crash leaves the old
// content or the new, never a mix and never an empty file: the data is on
// disk before the rename can be.
//
// save does not make the rename durable by itself (no fsync of the
// directory): on btrfs the rename joins the running transaction, so it
// reaches the disk with the next transaction commit (a snapshot, a syncfs,
// the periodic commit), never after a subvolume operation made after save
// returns. The callers place their syncs by that rule; see "Crash safety"
// in layers_durability.go. Content equal to what was last read or written
// is not written again.
func (s *layerState) save(path string) error {
	return s.write(path, nil)
}

// saveAfter is save with a btrfs transaction commit in the middle: flush
// (a syncfs of the filesystem) runs after the new content is written to
// the temporary file and before the rename, so it writes that data back
// (no fsync of the file needed) and commits everything done so far. The
// rename then joins the next transaction, with whatever the caller does
// next. flush runs even when the content is unchanged and nothing else is
// written.
func (s *layerState) saveAfter(path string, flush func() error) error {
	return s.write(path, flush)
}

func (s *layerState) write(path string, flush func() error) error {
	s.Version = layerStateVer
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode layer state: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return layerOpError("create state directory", dir, err)
	}
	// Temporary files a crash left behind are ours by name, in our directory.
	if stale, _ := filepath.Glob(filepath.Join(dir, filepath.Base(path)+".tmp-*")); len(stale) > 0 {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	atomicfile.RemoveStale(path + layerStateBackupSuffix)
	if s.raw != nil && bytes.Equal(data, s.raw) {
		if flush != nil {
			return flush()
		}
		return nil
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return layerOpError("create temporary state file in", dir, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && flush == nil {
		// Without it a transaction commit could hold the rename but not
		// the data (btrfs writes file data back on its own schedule), and
		// a crash would leave an empty state file: every layer unowned.
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return layerOpError("write layer state", path, err)
	}
	// The backup gets the new content first, atomically and durably
	// (atomicfile: temporary file, fsync, rename, fsync of the directory),
	// and only then the state file is replaced, as internal/bootstate does
	// with state.json.bak. So the backup is never behind the state file:
	// a backup one save behind would lack the layer just made, which is
	// NAME after the commit, and recovering from it would refuse that
	// layer. Ahead is harmless: it records by ID and UUID only subvolumes
	// dockroot made (or intends to make) under its own names. A state file
	// damaged later (a bad sector, an edit) is recovered from the backup.
	bak := path + layerStateBackupSuffix
	if err := atomicfile.WriteFile(bak, data, 0o600); err != nil {
		os.Remove(tmp)
		return layerOpError("back up layer state to", bak, err)
	}
	if flush != nil {
		if err := flush(); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return layerOpError("write layer state", path, err)
	}
	s.raw = data
	return nil
}

// owner returns the record of the subvolume with this ID and UUID.
func (s *layerState) owner(id uint64, uuid string) *layerRecord {
	for i := range s.Layers {
		if s.Layers[i].ID == id && s.Layers[i].UUID == uuid {
			return &s.Layers[i]
		}
	}
	return nil
}

func (s *layerState) forget(id uint64) {
	out := s.Layers[:0]
	for _, r := range s.Layers {
		if r.ID != id {
			out = append(out, r)
		}
	}
	s.Layers = out
}

func (s *layerState) intent(path string) *layerIntent {
	for i := range s.Intents {
		if s.Intents[i].Path == path {
			return &s.Intents[i]
		}
	}
	return nil
}

func (s *layerState) dropIntent(path string) {
	out := s.Intents[:0]
	for _, in := range s.Intents {
		if in.Path != path {
			out = append(out, in)
		}
	}
	s.Intents = out
}

// layerStateBackupSuffix names the backup beside the state file.
const layerStateBackupSuffix = ".bak"
