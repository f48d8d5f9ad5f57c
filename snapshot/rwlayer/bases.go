package rwlayer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
)

// Prepared bases. A fresh rw layer is the image's subvolume with the
// machine's top layer copied over it. Most boots copy the same top layer
// over the same image, and that copy is the one part of a boot whose cost
// grows with the image: every first write into a snapshot copies the
// image's tree blocks on its path and adds a reference for each pointer in
// them (see docs/BENCHMARKS.md). So, when a boot has applied the top
// layer, it keeps a read-only snapshot of the result, a base, and the next
// boot with the same image and the same top layer snapshots the base
// instead of the image and copies nothing.
//
// A base is used only if its key matches exactly. The key covers the
// image (ID, subvolume, subvolume UUID and the transaction of its last
// change), the rw layer's name, the top layer's directory and its
// fingerprint (toplayer.TakeFingerprint: every entry's path, inode, size,
// owner, mode, times and change time, and the version of the copy rules).
// A change to any of them is a miss, and the boot applies the top layer
// as it would without a base, then saves a new base.
//
// Layout, in the top level's .dockroot (dockroot's own directory):
//
//	.dockroot/bases/<slot>-<key>        a read-only subvolume
//	.dockroot/bases/<slot>-<key>.json   what it was made from (BaseInfo)
//
// slot is a hash of the rw layer's name and the image reference, so that
// each boot menu entry (one per tag) keeps its own base and a new base
// replaces only the one of its own entry. A base pins its image's data
// like a previous layer does; it goes when its entry saves a newer one,
// when its image subvolume is gone, or with `dockroot gc`.
//
// A base is a snapshot of the pending layer after the top layer was
// applied and before it was committed, so it holds nothing the booted
// system wrote. It is made with one snapshot ioctl, which is atomic: it
// exists complete or not at all, so it needs no temporary name. The
// sidecar is written just before it, without an fsync: its name is in the
// snapshot's transaction commit, its content may not be (btrfs writes
// file data back on its own schedule). A power cut can thus leave a base
// whose sidecar is empty; a base without a readable sidecar naming its
// key is never used, and the next save of its slot replaces it.

// BaseKey is everything a base depends on. Two boots with equal keys
// would make identical fresh layers.
type BaseKey struct {
	Layer       string // the rw layer's name (rootflags=subvol=)
	Ref         string // the image reference booted, for the slot
	ImageID     string
	ImageSubvol string // relative to the top level
	ImageUUID   string // of ImageSubvol
	ImageCTrans uint64 // btrfs transaction of ImageSubvol's last change
	Toplayer    string // the top layer's device and path, as the boot describes them
	Fingerprint string // toplayer.Fingerprint.Sum
}

// slot names the menu entry a base belongs to.
func (k BaseKey) slot() string { return shortHash(k.Layer, k.Ref)[:12] }

// Name is the base's file name in layout.BasesDir.
func (k BaseKey) Name() string {
	return k.slot() + "-" + shortHash(k.Layer, k.Ref, k.ImageID, k.ImageSubvol, k.ImageUUID,
		strconv.FormatUint(k.ImageCTrans, 10), k.Toplayer, k.Fingerprint)[:32]
}

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(strconv.Itoa(len(p)) + ":" + p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// BaseInfo is a base's sidecar, and what Bases.List reports.
type BaseInfo struct {
	Name    string    `json:"-"`
	Key     BaseKey   `json:"key"`
	Created time.Time `json:"created"`
	// Path is the base's absolute path; SubvolID is 0 when the sidecar's
	// subvolume is missing (List only).
	Path     string `json:"-"`
	SubvolID uint64 `json:"-"`
}

// Bases keeps the prepared bases under Top/layout.BasesDir.
type Bases struct {
	Top string                           // where the btrfs top level is mounted
	Log func(format string, args ...any) // one line per base saved or deleted; nil is silent
}

func (b *Bases) logf(format string, args ...any) {
	if b.Log != nil {
		b.Log(format, args...)
	}
}

func (b *Bases) dir() string { return filepath.Join(b.Top, layout.BasesDir) }

// Find returns the path, relative to Top, of the base for k, if there is
// a complete one: a read-only subvolume with its sidecar naming k.
func (b *Bases) Find(k BaseKey) (string, bool) {
	name := k.Name()
	abs := filepath.Join(b.dir(), name)
	info, err := btrfs.SubvolInfo(abs)
	if err != nil || !info.ReadOnly {
		return "", false
	}
	side, err := readBaseInfo(abs + ".json")
	if err != nil || side.Key != k {
		return "", false
	}
	return filepath.Join(layout.BasesDir, name), true
}

// Save makes a read-only snapshot of the subvolume at from (absolute: the
// pending layer, top layer applied) as the base for k, then deletes the
// other bases of k's slot and those whose image subvolume is gone. It
// returns the new base's path relative to Top and the bases deleted. A
// deletion failure is returned after the new base exists; the caller may
// treat it as a warning.
func (b *Bases) Save(from string, k BaseKey) (string, []string, error) {
	dir := b.dir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, layerOpError("create the bases directory", dir, err)
	}
	name := k.Name()
	abs := filepath.Join(dir, name)
	if _, err := os.Lstat(abs); err == nil {
		// A base for k that Find did not accept: incomplete, or not
		// read-only. It is dockroot's (it is in layout.BasesDir): replace it.
		if err := btrfs.DeleteRecursive(abs); err != nil {
			return "", nil, layerOpError("delete the unusable base", abs, err)
		}
	}
	data, err := json.MarshalIndent(BaseInfo{Key: k, Created: time.Now().UTC()}, "", "  ")
	if err != nil {
		return "", nil, err
	}
	// No fsync: a sidecar lost to a power cut only makes Find miss (see
	// above); the boot path keeps its one flush for the layer.
	if err := os.WriteFile(abs+".json", append(data, '\n'), 0o600); err != nil {
		return "", nil, layerOpError("write", abs+".json", err)
	}
	if err := btrfs.Snapshot(from, dir, name, true); err != nil {
		os.Remove(abs + ".json")
		return "", nil, layerOpError("snapshot "+from+" read-only as the base", abs, err)
	}
	rel := filepath.Join(layout.BasesDir, name)
	b.logf("saved the prepared base %s for the next boot", rel)
	deleted, err := b.prune(func(bi BaseInfo) bool {
		if bi.Name == name {
			return false
		}
		if strings.HasPrefix(bi.Name, k.slot()+"-") || bi.Key.ImageSubvol == "" {
			return true
		}
		_, err := os.Lstat(filepath.Join(b.Top, bi.Key.ImageSubvol))
		return errors.Is(err, os.ErrNotExist)
	})
	return rel, deleted, err
}

// List returns the bases, oldest first; entries without a readable
// sidecar have a zero Key.
func (b *Bases) List() ([]BaseInfo, error) {
	entries, err := os.ReadDir(b.dir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, layerOpError("list", b.dir(), err)
	}
	seen := map[string]bool{}
	var out []BaseInfo
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".json")
		if seen[name] {
			continue
		}
		seen[name] = true
		abs := filepath.Join(b.dir(), name)
		bi, _ := readBaseInfo(abs + ".json")
		bi.Name, bi.Path = name, abs
		if info, err := btrfs.SubvolInfo(abs); err == nil {
			bi.SubvolID = info.ID
			if bi.Created.IsZero() {
				bi.Created = info.Otime
			}
		}
		out = append(out, bi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Delete deletes the base name (as List reports it) and its sidecar.
func (b *Bases) Delete(name string) error {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%q is not a base's name", name)
	}
	abs := filepath.Join(b.dir(), name)
	if _, err := os.Lstat(abs); err == nil {
		if err := btrfs.DeleteRecursive(abs); err != nil {
			return layerOpError("delete the base", abs, err)
		}
	}
	if err := os.Remove(abs + ".json"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return layerOpError("delete", abs+".json", err)
	}
	return nil
}

// prune deletes the bases drop selects and returns their paths relative
// to Top; it goes on past a failure and returns the first.
func (b *Bases) prune(drop func(BaseInfo) bool) ([]string, error) {
	all, err := b.List()
	if err != nil {
		return nil, err
	}
	var deleted []string
	var first error
	for _, bi := range all {
		if !drop(bi) {
			continue
		}
		if err := b.Delete(bi.Name); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		rel := filepath.Join(layout.BasesDir, bi.Name)
		deleted = append(deleted, rel)
		b.logf("deleted the prepared base %s", rel)
	}
	return deleted, first
}

func readBaseInfo(path string) (BaseInfo, error) {
	var bi BaseInfo
	data, err := os.ReadFile(path)
	if err != nil {
		return bi, err
	}
	if err := json.Unmarshal(data, &bi); err != nil {
		return bi, fmt.Errorf("%s: %w", path, err)
	}
	return bi, nil
}

// NewBaseKey is the key of the base for booting img (resolved under top)
// as the rw layer layer, with the top layer described by toplayer (device
// and path) whose fingerprint is fingerprint.
func NewBaseKey(top, layer string, img *snapshot.Image, toplayer, fingerprint string) (BaseKey, error) {
	info, err := btrfs.SubvolInfo(filepath.Join(top, img.Subvolume))
	if err != nil {
		return BaseKey{}, fmt.Errorf("image subvolume %s: %w", img.Subvolume, err)
	}
	return BaseKey{Layer: layer, Ref: img.Ref, ImageID: img.ID, ImageSubvol: img.Subvolume,
		ImageUUID: info.UUID.String(), ImageCTrans: info.CTransID,
		Toplayer: toplayer, Fingerprint: fingerprint}, nil
}
