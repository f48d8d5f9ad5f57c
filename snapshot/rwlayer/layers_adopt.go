package rwlayer

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/dockroot/dockroot/internal/btrfs"
)

// Adopting the ancestor's layers.
//
// dockroot's ancestor, an mkinitcpio hook, made rootflags=subvol=NAME with
// `btrfs subvolume snapshot <docker_path>/btrfs/subvolumes/<cache-id> NAME`
// on every boot and kept no record. A machine migrating from it therefore
// has an unowned NAME (and perhaps NAME.prev.N) on its first dockroot boot,
// and the ancestor's exact kernel parameters must keep working there.
//
// The proof that such a subvolume is the ancestor's and not the user's own
// work is the snapshot relation btrfs records: its parent UUID is the UUID
// of a subvolume in Docker's btrfs graph-driver directory. Docker creates
// every subvolume there itself (one per image layer, container layer and
// "-init" layer, see moby daemon/graphdriver/btrfs), so a writable snapshot
// of one of them under a rootflags subvol= name is what the ancestor made.
// Anything else unowned (a subvolume created empty, a snapshot of something
// outside the Docker data root, a plain directory) is still refused.

// AdoptedSource is the Source recorded for a layer adopted from the
// ancestor hook (LayerInfo.Source, layers.json "source").
const AdoptedSource = "adopted"

// dockerSubvolumesDir is where Docker's btrfs graph driver keeps its
// subvolumes, relative to the Docker data root.
const dockerSubvolumesDir = "btrfs/subvolumes"

// adoptAncestor records as dockroot's every unowned subvolume under NAME or
// NAME.prev.N that is a snapshot of a subvolume in the Docker data root's
// graph-driver directory, logs each adoption, and saves the state file if
// it adopted any. Nothing is renamed or deleted here.
func (c *layerCtx) adoptAncestor(st *layerState) error {
	sc, err := c.scan(st)
	if err != nil {
		return err
	}
	var candidates []*layerSlot
	if s := sc.current; s != nil {
		candidates = append(candidates, s)
	}
	for _, n := range sc.prevIndices() {
		candidates = append(candidates, sc.prevs[n])
	}
	var want []*layerSlot
	for _, s := range candidates {
		if !s.owned && s.id != 0 && s.puuid != "" && s.puuid != "-" {
			want = append(want, s)
		}
	}
	if len(want) == 0 {
		return nil
	}
	// Only on the first boot after a migration: read the graph driver's
	// directory once, one ioctl per entry.
	layers, err := c.dockerLayerUUIDs()
	if err != nil {
		return err
	}
	adopted := 0
	for _, s := range want {
		cacheID, ok := layers[s.puuid]
		if !ok {
			continue
		}
		st.Layers = append(st.Layers, layerRecord{
			ID: s.id, UUID: s.uuid, Family: c.name, Path: s.rel,
			Created: time.Now().UTC(), Source: AdoptedSource,
			Live: s == sc.current,
		})
		s.owned = true
		adopted++
		c.logf("adopted %s: a snapshot of Docker layer %s, created by the ancestor hook (subvolume %d); dockroot now rotates it like its own layers",
			s.rel, cacheID, s.id)
	}
	if adopted == 0 {
		return nil
	}
	return st.save(c.statePath)
}

// dockerLayerUUIDs maps the UUID of every subvolume directly under
// <DockerPath>/btrfs/subvolumes to its name there (Docker's cache-id). A
// Docker data root without that directory (another storage driver, or no
// Docker at all) has none.
func (c *layerCtx) dockerLayerUUIDs() (map[string]string, error) {
	dir := filepath.Join(c.top, c.dockerPath, dockerSubvolumesDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, layerOpError("read Docker's btrfs layer directory", dir, err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		abs := filepath.Join(dir, e.Name())
		sub, err := btrfs.IsSubvolume(abs)
		if err != nil {
			return nil, layerOpError("inspect Docker layer", abs, err)
		}
		if !sub {
			continue
		}
		info, err := btrfs.SubvolInfo(abs)
		if err != nil {
			return nil, layerOpError("inspect Docker layer", abs, err)
		}
		if info.ID == btrfs.TopLevelID || info.UUID.IsZero() {
			continue
		}
		out[info.UUID.String()] = e.Name()
	}
	return out, nil
}
