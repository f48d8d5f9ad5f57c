package rwlayer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Intent markers: before Prepare snapshots an image under NAME.dockroot-tmp
// it creates an empty file in layout.StateDir whose name says which temporary
// path the snapshot will have and which subvolume it will be a snapshot
// of. A name is btrfs metadata, so the snapshot ioctl's own transaction
// commit writes the marker and the snapshot together, with no flush of
// its own (see layers_durability.go); the state file, whose content is
// file data, would need an fsync first. A subvolume under the temporary
// name whose parent UUID matches a marker for that name is proven
// dockroot's even if the boot stopped before recording it.
//
//	.dockroot/intent-<first 16 hex digits of sha256(temporary path)>-<source UUID>
//
// The marker's mtime is when the intent was recorded.
const intentPrefix = "intent-"

type intentMark struct {
	SourceUUID string
	Started    time.Time
	file       string
}

func intentKey(tmpRel string) string {
	h := sha256.Sum256([]byte(tmpRel))
	return intentPrefix + hex.EncodeToString(h[:8]) + "-"
}

// recordIntent replaces any marker for tmpRel with one naming srcUUID.
func (c *layerCtx) recordIntent(tmpRel, srcUUID string) error {
	dir := filepath.Dir(c.statePath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return layerOpError("create state directory", dir, err)
	}
	c.dropIntentMarks(tmpRel)
	name := filepath.Join(dir, intentKey(tmpRel)+srcUUID)
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return layerOpError("record the intent to snapshot into "+tmpRel+" as", name, err)
	}
	return f.Close()
}

// intentMarks returns the markers for tmpRel, in no particular order.
func (c *layerCtx) intentMarks(tmpRel string) []intentMark {
	dir := filepath.Dir(c.statePath)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	key := intentKey(tmpRel)
	var out []intentMark
	for _, e := range entries {
		src, ok := strings.CutPrefix(e.Name(), key)
		if !ok || src == "" || !e.Type().IsRegular() {
			continue
		}
		m := intentMark{SourceUUID: src, file: filepath.Join(dir, e.Name())}
		if fi, err := e.Info(); err == nil {
			m.Started = fi.ModTime().UTC()
		}
		out = append(out, m)
	}
	return out
}

// intentFor returns the recorded intent for tmpRel whose source is
// parentUUID: a marker, or an intent in a state file written by an older
// dockroot, which recorded them there.
func (c *layerCtx) intentFor(st *layerState, tmpRel, parentUUID string) (time.Time, bool) {
	if parentUUID == "" || parentUUID == "-" {
		return time.Time{}, false
	}
	for _, m := range c.intentMarks(tmpRel) {
		if m.SourceUUID == parentUUID {
			return m.Started, true
		}
	}
	if in := st.intent(tmpRel); in != nil && in.SourceUUID == parentUUID {
		return in.Started, true
	}
	return time.Time{}, false
}

// dropIntentMarks removes tmpRel's markers. Callers remove them only once
// what they proved is otherwise settled: the subvolume gone or recorded
// by ID and UUID in a state file renamed into place earlier in program
// order (so no transaction holds the removal without the record).
func (c *layerCtx) dropIntentMarks(tmpRel string) {
	for _, m := range c.intentMarks(tmpRel) {
		if err := os.Remove(m.file); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.logf("rw layer: remove intent marker %s: %v", m.file, err)
		}
	}
}
