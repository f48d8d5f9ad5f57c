package rwlayer

import (
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
// of the top-layer subvolume of the image being booted (Layers.AdoptFrom),
// which is exactly what the ancestor snapshotted into NAME. Only NAME is
// ever adopted: the ancestor made nothing else. A snapshot of any other
// Docker subvolume (a container's layer, its "-init" layer, a lower image
// layer, another image's top layer) is the user's, and is refused like
// anything else unowned (a subvolume created empty, a snapshot of
// something outside the Docker data root, a plain directory), as is a
// Docker snapshot under NAME.prev.N.
//
// An adopted layer holds whatever the machine wrote while the ancestor
// booted it, and dockroot cannot know whether the user still needs that.
// So it is never deleted automatically: once a new layer replaces it, it
// moves to NAME.adopted, outside the numbered previous layers the keep
// count deletes, and only DeleteAdopted (the host's `dockroot gc
// --adopted`) removes it.

// AdoptedSource is the Source recorded for a layer adopted from the
// ancestor hook (LayerInfo.Source, layers.json "source").
const AdoptedSource = "adopted"

// adoptAncestor records NAME as dockroot's, adopted, if it is unowned and a
// snapshot of AdoptFrom, logs it, and saves the state file. Nothing is
// renamed or deleted here.
func (c *layerCtx) adoptAncestor(st *layerState) error {
	if c.adoptFrom == "" {
		return nil
	}
	sc, err := c.scan(st)
	if err != nil {
		return err
	}
	s := sc.current
	if s == nil || s.owned || s.id == 0 || s.puuid == "" || s.puuid == "-" {
		return nil
	}
	src := filepath.Clean("/" + c.adoptFrom)[1:]
	info, err := btrfs.SubvolInfo(filepath.Join(c.top, src))
	if err != nil {
		return layerOpError("inspect the booted image's top layer", filepath.Join(c.top, src), err)
	}
	if info.UUID.IsZero() || info.UUID.String() != s.puuid {
		return nil
	}
	st.Layers = append(st.Layers, layerRecord{
		ID: s.id, UUID: s.uuid, Family: c.name, Path: s.rel,
		Created: time.Now().UTC(), Source: AdoptedSource,
		Live: true, Adopted: true,
	})
	s.owned = true
	c.logf("adopted %s: a snapshot of %s (the booted image's top layer), created by the ancestor hook (subvolume %d); "+
		"once replaced it is kept as %s until `dockroot gc --adopted` removes it, never deleted automatically",
		s.rel, src, s.id, c.rel(c.base+adoptedSuffix))
	return st.save(c.statePath)
}

// DeleteAdopted deletes the adopted ancestor layer kept under NAME.adopted
// (the host's `dockroot gc --adopted`) and returns what it deleted,
// relative to Top. An adopted layer still under NAME is not deleted.
func (l *Layers) DeleteAdopted() ([]string, error) {
	c, st, sc, err := l.scanned()
	if err != nil {
		return nil, err
	}
	a := sc.adopted
	if a == nil {
		return nil, nil
	}
	if r := st.owner(a.id, a.uuid); r == nil || !r.Adopted {
		return nil, &NotOwnedError{Path: filepath.Join(c.top, a.rel), What: a.what + ", not recorded as adopted", Action: "delete", State: c.statePath}
	}
	if err := c.deleteOwned(st, a.rel); err != nil {
		return nil, err
	}
	if err := c.settle(st); err != nil {
		return nil, err
	}
	return []string{a.rel}, nil
}
