package update

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dockroot/dockroot/internal/atomicfile"
)

// StateFile is the update record in the boot directory: what `dockroot
// update` staged for the next boot. It lives beside the kernels because
// that is what survives a reboot: the booted system's own files are fresh
// every boot. A file, not a directory, so it is never an installed tag.
const StateFile = ".dockroot-update.json"

const stateSchema = 1

// State is StateFile.
type State struct {
	Schema int      `json:"schema"`
	Staged []Staged `json:"staged,omitempty"`
}

// Staged is one reference whose new image was installed for the next boot.
type Staged struct {
	Ref      string    `json:"ref"`
	ImageID  string    `json:"image_id"`
	Previous string    `json:"previous_image_id,omitempty"` // what the entry booted before
	Time     time.Time `json:"time"`
}

// ReadState reads bootDir's StateFile; a missing one is an empty State.
func ReadState(bootDir string) (*State, error) {
	path := filepath.Join(bootDir, StateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Schema: stateSchema}, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if s.Schema != stateSchema {
		return nil, fmt.Errorf("read %s: schema %d, this dockroot reads %d", path, s.Schema, stateSchema)
	}
	return &s, nil
}

// Stage records st, replacing an earlier record of the same reference.
func (s *State) Stage(st Staged) {
	for i := range s.Staged {
		if s.Staged[i].Ref == st.Ref {
			s.Staged[i] = st
			return
		}
	}
	s.Staged = append(s.Staged, st)
}

// Write replaces bootDir's StateFile atomically (temporary file, fsync,
// rename): a crash leaves the old record or the new one.
func (s *State) Write(bootDir string) error {
	s.Schema = stateSchema
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(bootDir, StateFile), append(data, '\n'), 0o644)
}
