// Package bootstate keeps dockroot's boot-counting record: which image the
// machine is trying, how many boots of it have not yet been marked good,
// and the last image that was. It lives in a small JSON file on the btrfs
// top level, beside the layer ownership record (<top>/.dockroot/state.json).
//
// Who calls it:
//   - dockroot-init (package hook), after resolving the image: Load, then
//     State.BeginBoot, which counts the attempt and says whether to boot the
//     image or fall back to the last good one after dockroot.tries= boots
//     that never reached mark-good;
//   - `dockroot mark-good`, run in the booted system by a systemd unit after
//     multi-user.target: MarkGood;
//   - `dockroot status`: Load.
//
// The file is small and rewritten whole: a temporary file, fsync, rename,
// fsync of the directory, then the same for a backup copy. A crash leaves
// the old or the new record, never a mix; a file corrupted some other way
// (a bad disk, a hand edit) is reported and replaced by the backup, so the
// last good image is not forgotten. Booting never depends on this file:
// every problem with it is a warning, and the boot goes on.
//
// It must not import the boot (hook) or the host tool's packages: both the
// init (counting) and the host tool (mark-good, retry) use it.
package bootstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/atomicfile"
	"github.com/dockroot/dockroot/internal/layout"
)

// Where the record lives: in layout.StateDir on the btrfs top level, beside
// the layer ownership record.
const (
	File       = "state.json"
	BackupFile = "state.json.bak"
	version    = 1
)

// DefaultTries is dockroot.tries= when not given: boots of a new image
// without mark-good before falling back to the last good image.
const DefaultTries = 3

// ErrCorrupt: the state file could not be parsed. Load still returns a
// usable State (from the backup, or empty).
var ErrCorrupt = errors.New("dockroot boot state file is unreadable")

// Image names an image by ID (sha256:…) and the reference it was booted as.
type Image struct {
	ID  string `json:"id"`
	Ref string `json:"ref,omitempty"`
}

func (i Image) String() string {
	switch {
	case i.Ref == "":
		return i.ID
	case i.ID == "":
		return i.Ref
	}
	return fmt.Sprintf("%s (%s)", i.Ref, shortID(i.ID))
}

// Trial is the image being tried: booted, not yet marked good.
type Trial struct {
	Image
	Attempts int       `json:"attempts"` // boots of it counted so far
	First    time.Time `json:"first"`    // first counted boot
	Last     time.Time `json:"last"`     // latest counted boot
}

// Good is the last image marked good.
type Good struct {
	Image
	Marked time.Time `json:"marked"`
}

// Record is the content of the state file.
type Record struct {
	Version  int    `json:"version"`
	Trying   *Trial `json:"trying,omitempty"`
	LastGood *Good  `json:"last_good,omitempty"`
	// FellBack is set by a boot that fell back to LastGood, naming the
	// image it gave up on; `dockroot status` shows it.
	FellBack *Image `json:"fell_back,omitempty"`
}

// State is a loaded Record and where it is kept.
type State struct {
	Record
	top string
	now func() time.Time
}

// Path is the state file of the btrfs top level mounted at top.
func Path(top string) string { return filepath.Join(top, layout.StateDir, File) }

func backupPath(top string) string { return filepath.Join(top, layout.StateDir, BackupFile) }

// Load reads the state of the btrfs top level mounted at top. It always
// returns a usable State. A missing file is an empty state (first boot).
// If the file is unreadable, the error says so (errors.Is ErrCorrupt for a
// bad file) and the State is the backup's, or empty if the backup is bad
// too: boot counting restarts, and the next save rewrites both files.
func Load(top string) (*State, error) {
	s := &State{Record: Record{Version: version}, top: top, now: time.Now}
	main, mainErr := readRecord(Path(top))
	if mainErr == nil {
		if main != nil {
			s.Record = *main
		}
		return s, nil
	}
	bak, bakErr := readRecord(backupPath(top))
	switch {
	case bakErr == nil && bak != nil:
		s.Record = *bak
		return s, fmt.Errorf("%w; using the backup %s (last good: %s)", mainErr, backupPath(top), s.lastGoodString())
	case bakErr == nil:
		return s, fmt.Errorf("%w; no backup: boot counting starts again and no last good image is known", mainErr)
	}
	return s, fmt.Errorf("%w; the backup is unusable too (%v): boot counting starts again and no last good image is known", mainErr, bakErr)
}

func (s *State) lastGoodString() string {
	if s.LastGood == nil {
		return "none"
	}
	return s.LastGood.String()
}

// readRecord reads one state file; a missing file is (nil, nil).
func readRecord(path string) (*Record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read boot state %s: %w", path, err)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	return r, nil
}

// Parse decodes a state file. Unknown fields are refused, so a newer
// dockroot's file is not half-understood and then overwritten.
func Parse(data []byte) (*Record, error) {
	var r Record
	if err := atomicfile.DecodeStrict(data, &r); err != nil {
		return nil, err
	}
	if r.Version != version {
		return nil, fmt.Errorf("version %d, this dockroot reads version %d", r.Version, version)
	}
	if t := r.Trying; t != nil {
		if err := checkID(t.ID); err != nil {
			return nil, fmt.Errorf("trying: %w", err)
		}
		if t.Attempts < 0 {
			return nil, fmt.Errorf("trying: %d attempts", t.Attempts)
		}
	}
	if g := r.LastGood; g != nil {
		if err := checkID(g.ID); err != nil {
			return nil, fmt.Errorf("last_good: %w", err)
		}
	}
	if f := r.FellBack; f != nil {
		if err := checkID(f.ID); err != nil {
			return nil, fmt.Errorf("fell_back: %w", err)
		}
	}
	return &r, nil
}

// checkID accepts what Docker's image IDs are: sha256: and 64 lower hex.
func checkID(id string) error {
	hex, ok := strings.CutPrefix(id, "sha256:")
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return fmt.Errorf("image id %q is not sha256:<64 hex digits>", id)
	}
	return nil
}

func shortID(id string) string {
	hex := strings.TrimPrefix(id, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

// Save writes the state atomically, then its backup.
func (s *State) Save() error {
	s.Version = version
	data, err := json.MarshalIndent(&s.Record, "", "  ")
	if err != nil {
		return fmt.Errorf("encode boot state: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Join(s.top, layout.StateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create dockroot state directory %s: %w", dir, err)
	}
	// The main file first: a crash between the two leaves the backup one
	// write behind, and Load prefers the main file.
	if err := writeAtomic(Path(s.top), data); err != nil {
		return err
	}
	return writeAtomic(backupPath(s.top), data)
}

// writeAtomic replaces path with data. Only dockroot-init and the
// mark-good/retry verbs write the boot state, one at a time, so a temporary
// file beside it is a crash's leftover.
func writeAtomic(path string, data []byte) error {
	atomicfile.RemoveStale(path)
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write boot state: %w", err)
	}
	return nil
}
