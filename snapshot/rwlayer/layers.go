// Package rwlayer owns the read-write layers dockroot boots from: Prepare
// snapshots an image (or a prepared base) under a temporary name, Commit
// puts it under NAME and rotates the previous ones (NAME.prev.N, and
// NAME.failed, NAME.adopted outside the rotation), so a crash at any
// point leaves a bootable layer; Bases keeps the prepared bases. It
// deletes only what its ownership record (.dockroot/layers.json) says it
// created.
//
// It must not import the boot (hook), the host tool's packages or the
// image stores' internals: the boot passes it the image's subvolume.
package rwlayer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/layout"
	"golang.org/x/sys/unix"
)

// ErrNotOwned: dockroot refused to replace, rename or delete something it
// did not create, or something it never deletes (the top level, anything
// in the Docker data root). See *NotOwnedError.
var ErrNotOwned = errors.New("not a layer dockroot created")

// Layers manages the read-write layers booted through one
// rootflags=subvol=NAME: NAME is the current layer, NAME.prev.1 … the
// previous ones, newest first. All of them live in NAME's parent
// directory, so every rename stays inside one subvolume.
//
// The boot calls Prepare, applies the top layer into Pending.Path(), then
// Commit; or Create for both. The host CLI calls List.
//
// Guarantees:
//   - at every instant NAME holds a complete layer (the old one, then the
//     new one: they are swapped by one renameat2(RENAME_EXCHANGE));
//   - the old layer is deleted, if Keep asks for it, only after the new one
//     is under NAME;
//   - a crash at any point is repaired by the next Prepare, which finishes
//     the interrupted rotation and deletes a prepared layer that never went
//     live;
//   - only subvolumes recorded by ID and UUID in Top/.dockroot/layers.json
//     are ever renamed or deleted; the top level and the Docker data root
//     never are. Subvolumes nested in a layer (systemd's var/lib/machines,
//     Docker's own) are deleted with it, found by tree search, not by
//     walking files.
//
// These hold after a power cut too, not only after an error; the argument
// (which btrfs operations reach the disk in which order, and the few
// flushes that requires) is written down in layers_durability.go.
//
// A NAME (or NAME.prev.N) that dockroot did not create — the user's own
// subvolume, a plain directory — is never touched: Prepare refuses with a
// *NotOwnedError that says how to move it away. Moving it aside
// automatically was rejected: renaming someone's subvolume out from under
// an fstab entry or a backup job is not provably safe. The one exception is
// the ancestor hook's layer, a snapshot of a Docker layer subvolume, which
// Prepare adopts (see adoptAncestor in layers_adopt.go).
type Layers struct {
	Top        string                           // where the btrfs top level (subvolid=5) is mounted
	Name       string                           // rootflags subvol=, relative to Top, e.g. "@/docker_rwlayer"
	Keep       int                              // previous layers to keep (dockroot.keep)
	Log        func(format string, args ...any) // one line per action; nil is silent
	DockerPath string                           // Docker data root relative to Top; "" is layout.DefaultDockerPath
	// StorePaths are the other image stores' roots relative to Top
	// (podman_path=, containerd_path=): like the Docker data root, a
	// layer name inside or above one is refused, and nothing in one is
	// deleted.
	StorePaths []string
	Image      string // image ID recorded with new layers; optional
	// AdoptFrom is the subvolume, relative to Top, of the booted image's
	// top layer (snapshot.Image.Subvolume). A NAME dockroot did not create
	// is adopted only when it is a snapshot of exactly this subvolume, as
	// the ancestor hook made it; "" adopts nothing (dockroot.adopt=0).
	// See layers_adopt.go.
	AdoptFrom string
	// LastGood is the ID of the last image marked good (boot counting's
	// record; "" when counting is off or nothing was marked yet). A
	// commit that displaces a layer recorded as made from another image
	// — the boot of an image on trial that was never marked good — moves
	// it to NAME.failed instead of NAME.prev.1, and the previous layers
	// stay where they are, so NAME.prev.1 remains the last good boot's
	// layer (issue 17 item 10). "" rotates every layer, as does a layer
	// with no recorded image. With Keep 0 it changes nothing.
	LastGood string

	// hook, when set (tests only), runs at every named point of Prepare and
	// Commit; an error stops there as a crash would, without cleanup.
	hook func(point string) error
}

// CreateResult describes a committed layer.
type CreateResult struct {
	Path     string   // absolute path of NAME, now the new layer
	SubvolID uint64   // the new layer's subvolume ID
	UUID     string   // the new layer's subvolume UUID
	Rotated  []string // "FROM -> TO" per renamed previous layer, relative to Top
	Deleted  []string // layers deleted, relative to Top (with everything nested in them)
	// Warnings: steps that failed after the new layer was live. NAME is
	// complete and bootable; the next Prepare retries the rotation.
	Warnings []string
}

// LayerInfo is a layer under NAME or NAME.prev.N.
type LayerInfo struct {
	Name     string // relative to Top: what rootflags=subvol= would name
	Path     string // absolute
	Index    int    // 0 for NAME, N for NAME.prev.N, IndexAdopted, IndexTmp
	SubvolID uint64 // 0 if it is not a subvolume
	UUID     string
	Owned    bool // recorded as created by dockroot; only owned layers are rotated
	Created  time.Time
	Source   string // image subvolume it was made from (owned layers)
	Image    string // image ID, when recorded
	// Adopted: the ancestor hook's layer, adopted from NAME. It is kept
	// under NAME.adopted (Index -1, listed last) and deleted only by
	// DeleteAdopted.
	Adopted bool
	// Tmp: NAME.dockroot-tmp, left by a boot that stopped between its
	// snapshot and its commit, or displaced by an interrupted commit; the
	// next boot deletes or puts it back. Live says it is the layer the
	// last boot committed (the record's live flag): never deleted then.
	Tmp, Live bool
	// Failed: NAME.failed, the layer of the last boot of an image on
	// trial that was not marked good (Image names it), kept apart so that
	// NAME.prev.1 stays the last good boot's layer. The next such boot
	// replaces it; nothing else deletes it but `dockroot gc`.
	Failed bool
}

// The Index of the layers that are not in the numbered rotation.
const (
	IndexAdopted = -1 // NAME.adopted
	IndexTmp     = -2 // NAME.dockroot-tmp
	IndexFailed  = -3 // NAME.failed
)

// NotOwnedError says dockroot left something alone because it did not
// create it, or because it is something dockroot never deletes.
type NotOwnedError struct {
	Path      string // absolute
	What      string // "a plain directory", "subvolume 260 (uuid …)", …
	Action    string // "replace", "rotate" or "delete"
	Layer     string // the rw layer NAME, for replace and rotate
	State     string // the ownership record consulted
	Protected bool   // the top level, the Docker data root, a path through a symlink
}

func (e *NotOwnedError) Error() string {
	switch {
	case e.Protected:
		return fmt.Sprintf("refusing to delete %s: it is %s, which dockroot never deletes", e.Path, e.What)
	case e.Action == "delete":
		return fmt.Sprintf("refusing to delete %s: it is %s that dockroot did not create (it is not recorded in %s); "+
			"delete it yourself (btrfs subvolume delete %s) if you mean to", e.Path, e.What, e.State, e.Path)
	}
	return fmt.Sprintf("cannot %s the rw layer %s: %s is %s that dockroot did not create (it is not recorded in %s); "+
		"dockroot never replaces, renames or deletes what it did not create: move it away (mv %s %s.mine)",
		e.Action, e.Layer, e.Path, e.What, e.State, e.Path, e.Path)
}

// Is makes errors.Is(err, ErrNotOwned) true.
func (e *NotOwnedError) Is(target error) bool { return target == ErrNotOwned }

// Pending is a new layer made by Prepare, not yet under NAME.
type Pending struct {
	c      *layerCtx
	rel    string // relative to Top
	id     uint64
	uuid   string
	record layerRecord // what Commit or Abort records in the state file
	state  pendingState
	// st is the state as Prepare left it (read, recovered, bookkept):
	// Commit and Abort go on from it rather than read the file again.
	// Layers is not for concurrent use; only the boot prepares layers.
	st *layerState
	// metadataOnly: the caller wrote no file data into the layer, only
	// btrfs metadata (see MetadataOnly).
	metadataOnly bool
}

type pendingState int

const (
	pendingPrepared pendingState = iota
	pendingLive                  // Commit put it under NAME
	pendingAborted
)

// Path is the absolute path of the new layer, where the top layer is
// applied before Commit.
func (p *Pending) Path() string { return filepath.Join(p.c.top, p.rel) }

// SubvolID is the new layer's subvolume ID.
func (p *Pending) SubvolID() uint64 { return p.id }

// MetadataOnly tells Commit that everything written into the layer since
// Prepare is btrfs metadata: names, directories, symlinks, modes, owners,
// times, xattrs, deletions, and file contents shared by reflink (FICLONE,
// which also copies an inline extent straight into the tree), but no file
// data written through the page cache (write, copy_file_range). The
// transaction that holds the exchange then holds all of it, and Commit
// skips the syncfs that would otherwise write that data back first (see
// layers_durability.go). A caller that copied bytes (toplayer.Summary's
// Copied > 0) must not call it.
func (p *Pending) MetadataOnly() { p.metadataOnly = true }

// Sync waits until everything Layers did on the filesystem is on disk:
// one btrfs transaction commit (syncfs). Boots do not call it; see Commit.
func (l *Layers) Sync() error {
	if err := btrfs.Sync(l.Top); err != nil {
		return layerOpError("sync", l.Top, err)
	}
	return nil
}

// PrevName is the name, relative to Top, of the n-th previous layer: what
// rootflags=subvol= names to boot it.
func (l *Layers) PrevName(n int) string {
	return filepath.Join(filepath.Dir(l.cleanName()), prevName(filepath.Base(l.cleanName()), n))
}

// Create makes a new layer from imageSubvol (relative to Top) and puts it
// under NAME: Prepare then Commit, deleting the new layer if Commit fails
// before it went live.
func (l *Layers) Create(imageSubvol string) (*CreateResult, error) {
	p, err := l.Prepare(imageSubvol)
	if err != nil {
		return nil, err
	}
	res, err := p.Commit()
	if err != nil {
		if aerr := p.Abort(); aerr != nil {
			l.logf("rw layer: cleanup after failed commit: %v", aerr)
		}
		return nil, err
	}
	return res, nil
}

// Prepare finishes what an interrupted earlier run left (see Layers), then
// snapshots imageSubvol (relative to Top) into a writable layer under
// NAME.dockroot-tmp. An intent marker made before the snapshot proves the
// layer dockroot's (see layers_intent.go); Commit or Abort records it by
// subvolume ID and UUID.
func (l *Layers) Prepare(imageSubvol string) (*Pending, error) {
	c, err := l.open()
	if err != nil {
		return nil, err
	}
	img, imgInfo, err := c.imageSubvolume(imageSubvol)
	if err != nil {
		return nil, err
	}
	st, err := loadLayerState(c.statePath, c.logf)
	if err != nil {
		return nil, err
	}
	if err := c.ensureDir(); err != nil {
		return nil, err
	}
	if err := c.adoptAncestor(st); err != nil {
		return nil, err
	}
	if err := c.recover(st); err != nil {
		return nil, err
	}

	tmpRel := c.rel(tmpName(c.base))
	if err := c.recordIntent(tmpRel, imgInfo.UUID.String()); err != nil {
		return nil, err
	}
	if err := c.at("prepare: intent recorded"); err != nil {
		return nil, err
	}
	if err := btrfs.Snapshot(filepath.Join(c.top, img), c.dirAbs, tmpName(c.base), false); err != nil {
		c.dropIntentMarks(tmpRel)
		return nil, layerOpError("snapshot image subvolume "+img+" to", filepath.Join(c.top, tmpRel), err)
	}
	if err := c.at("prepare: snapshot made"); err != nil {
		return nil, err
	}
	info, err := btrfs.SubvolInfo(filepath.Join(c.top, tmpRel))
	if err != nil {
		return nil, layerOpError("inspect new layer", filepath.Join(c.top, tmpRel), err)
	}
	// The layer is recorded by ID and UUID when Commit or Abort next
	// writes the state file; until then the intent marker, on disk since
	// the snapshot's own transaction commit, proves it is dockroot's.
	c.logf("rw layer: created %s (subvolume %d) from %s", tmpRel, info.ID, img)
	return &Pending{c: c, rel: tmpRel, id: info.ID, uuid: info.UUID.String(), st: st,
		record: layerRecord{
			ID: info.ID, UUID: info.UUID.String(), Family: c.name, Path: tmpRel,
			Created: time.Now().UTC(), Source: img, Image: c.image,
		}}, nil
}

// adopt records the prepared layer in st as dockroot's, if it is not yet,
// and drops the intent that stood for it. The caller has checked that the
// subvolume under the temporary name is the one Prepare made (same ID and
// UUID).
func (p *Pending) adopt(st *layerState) {
	if st.owner(p.id, p.uuid) == nil {
		st.forget(p.id) // a stale record of an older subvolume with this ID
		st.Layers = append(st.Layers, p.record)
	}
	st.dropIntent(p.rel)
}

// Commit puts the prepared layer under NAME and rotates the previous ones
// (see planRotation for the order). An error before the new layer is
// under NAME leaves NAME as it was; call Abort. Failures after that are
// reported in CreateResult.Warnings: the new layer is live and complete.
//
// Commit makes the new layer and its record durable before the exchange,
// and leaves the exchange itself to btrfs's next transaction commit (see
// layers_durability.go); call Layers.Sync to wait for it.
func (p *Pending) Commit() (*CreateResult, error) {
	if p.state != pendingPrepared {
		return nil, fmt.Errorf("commit %s: already committed or aborted", p.Path())
	}
	c, st := p.c, p.st
	sc, err := c.scan(st)
	if err != nil {
		return nil, err
	}
	if sc.tmp == nil || sc.tmp.id != p.id || sc.tmp.uuid != p.uuid {
		return nil, fmt.Errorf("commit %s: the prepared layer (subvolume %d) is no longer there", p.Path(), p.id)
	}
	p.adopt(st)
	sc.tmp.owned = true
	if err := c.checkOwned(sc); err != nil {
		return nil, err
	}
	// Record the new layer, and mark the current one live before it is
	// exchanged out (so a crash after the exchange finds it recorded as a
	// layer to keep), durably before the first step; with file data in
	// the layer, the same syncfs writes that back, so the layer is
	// complete on disk before it can be under NAME. See "Crash safety" in
	// layers_durability.go.
	c.bookkeep(st, sc)
	if p.metadataOnly {
		err = st.save(c.statePath)
	} else {
		err = st.saveAfter(c.statePath, func() error {
			if err := btrfs.Sync(c.top); err != nil {
				return layerOpError("sync the new layer before putting it under "+c.name+" on", c.top, err)
			}
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	// The record, renamed into place above, now proves the layer; the
	// marker's removal comes after it in every transaction.
	c.dropIntentMarks(p.rel)
	rot := sc.rotation(c.base, c.keep)
	rot.Tmp = tmpPending
	if cur := sc.current; cur != nil {
		// After the exchange the temporary name holds the current layer.
		if r := st.owner(cur.id, cur.uuid); r != nil {
			rot.TmpAdopted = r.Adopted
			rot.TmpFailed = c.failedTrial(r)
			if rot.TmpFailed && !rot.TmpAdopted && rot.Keep > 0 {
				c.logf("rw layer: %s was made from image %s, which was never marked good (the last good image is %s): "+
					"it is kept as %s, and %s stays the layer of the last good boot",
					c.name, shortImage(r.Image), shortImage(c.lastGood), c.rel(c.base+failedSuffix), c.rel(prevName(c.base, 1)))
			}
		}
	}
	steps, err := planRotation(rot, true)
	if err != nil {
		return nil, err
	}

	res := &CreateResult{Path: filepath.Join(c.top, c.name), SubvolID: p.id, UUID: p.uuid}
	// origin names each layer by where it was before this commit.
	origin := map[string]string{}
	for i, s := range steps {
		if err := c.at("commit: " + s.String()); err != nil {
			return nil, err
		}
		if err := c.apply(st, s); err != nil {
			if i == 0 {
				return nil, err
			}
			c.logf("rw layer: rotation incomplete, the next boot finishes it: %v", err)
			res.Warnings = append(res.Warnings, err.Error())
			break
		}
		from := c.rel(s.From)
		if o, ok := origin[s.From]; ok {
			from = o
		}
		switch {
		case i == 0:
			p.state = pendingLive
			c.logf("rw layer: %s is now the new layer (subvolume %d)", c.name, p.id)
			if s.Kind == stepExchange {
				origin[s.From] = c.name
			}
		case s.Kind == stepDelete:
			res.Deleted = append(res.Deleted, from)
		default:
			res.Rotated = append(res.Rotated, from+" -> "+c.rel(s.To))
			c.logf("rw layer: rotated %s -> %s", from, c.rel(s.To))
		}
	}
	if err := c.at("commit: rotated"); err != nil {
		return nil, err
	}
	// No sync here: the exchange, the renames and the deletion reach the
	// disk with btrfs's next transaction commit, after the boot. A crash
	// before it boots from the previous state, complete, and the next boot
	// does this again. layers.json catches up with the names (paths,
	// deleted layers) at the next Commit; it identifies layers by ID and
	// UUID, so it never has to. See layers_durability.go.
	return res, nil
}

// Abort deletes the prepared layer if it never went live. It deletes
// nothing else, and nothing after Commit put the layer under NAME.
func (p *Pending) Abort() error {
	if p.state != pendingPrepared {
		return nil
	}
	p.state = pendingAborted
	c, st := p.c, p.st
	info, err := btrfs.SubvolInfo(p.Path())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return layerOpError("inspect prepared layer", p.Path(), err)
	}
	if info.ID != p.id || info.UUID.String() != p.uuid {
		c.logf("rw layer: abort: %s is now subvolume %d, not the prepared %d; left alone", p.rel, info.ID, p.id)
		return nil
	}
	p.adopt(st)
	if err := c.deleteOwned(st, p.rel); err != nil {
		return err
	}
	if err := c.settle(st); err != nil {
		return err
	}
	c.dropIntentMarks(p.rel)
	return nil
}

// List returns the layers under NAME and NAME.prev.N, current first, then
// newest first, then NAME.adopted, NAME.failed and NAME.dockroot-tmp when
// they exist.
// Layers dockroot did not create are listed with Owned false. It changes
// nothing, so it can run on a live system.
func (l *Layers) List() ([]LayerInfo, error) {
	c, st, sc, err := l.scanned()
	if err != nil {
		return nil, err
	}
	var out []LayerInfo
	add := func(s *layerSlot, index int) {
		li := LayerInfo{Name: s.rel, Path: filepath.Join(c.top, s.rel), Index: index, SubvolID: s.id, UUID: s.uuid}
		if r := st.owner(s.id, s.uuid); r != nil {
			li.Owned, li.Created, li.Source, li.Image, li.Live = true, r.Created, r.Source, r.Image, r.Live
		}
		out = append(out, li)
	}
	if sc.current != nil {
		add(sc.current, 0)
	}
	for _, n := range sc.prevIndices() {
		add(sc.prevs[n], n)
	}
	if sc.adopted != nil {
		add(sc.adopted, IndexAdopted)
		out[len(out)-1].Adopted = out[len(out)-1].Owned && st.owner(sc.adopted.id, sc.adopted.uuid).Adopted
	}
	if sc.failed != nil {
		add(sc.failed, IndexFailed)
		out[len(out)-1].Failed = true
	}
	if sc.tmp != nil {
		add(sc.tmp, IndexTmp)
		out[len(out)-1].Tmp = true
	}
	return out, nil
}

// DeleteSubvolume deletes the layer at rel (relative to Top) and every
// subvolume nested in it, if dockroot created it. It refuses the top
// level, anything in the Docker data root, and anything not recorded as
// dockroot's, with an error matching ErrNotOwned.
func (l *Layers) DeleteSubvolume(rel string) error {
	c, err := l.open()
	if err != nil {
		return err
	}
	st, err := loadLayerState(c.statePath, c.logf)
	if err != nil {
		return err
	}
	if err := c.deleteOwned(st, rel); err != nil {
		return err
	}
	return c.settle(st)
}

// scanned opens l, loads the ownership record and scans the layers: what
// every read of the layers starts with.
func (l *Layers) scanned() (*layerCtx, *layerState, *layerScan, error) {
	c, err := l.open()
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := loadLayerState(c.statePath, c.logf)
	if err != nil {
		return nil, nil, nil, err
	}
	sc, err := c.scan(st)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, st, sc, nil
}

// layerCtx is Layers validated and resolved for one operation.
type layerCtx struct {
	top, name, dockerPath, image string
	storePaths                   []string
	adoptFrom, lastGood          string
	dirRel, dirAbs, base         string
	statePath                    string
	keep                         int
	guard                        *guard
	log                          func(string, ...any)
	hook                         func(string) error
}

func (l *Layers) logf(format string, args ...any) {
	if l.Log != nil {
		l.Log(format, args...)
	}
}

func (l *Layers) cleanName() string {
	return filepath.Clean("/" + l.Name)[1:]
}

// open validates l and checks that Top is a btrfs top level.
func (l *Layers) open() (*layerCtx, error) {
	dp := layout.DefaultDockerPath
	if l.DockerPath != "" {
		dp = filepath.Clean("/" + l.DockerPath)[1:]
	}
	name := l.cleanName()
	if err := checkLayerName(name, l.Name, dp); err != nil {
		return nil, err
	}
	var stores []string
	for _, p := range l.StorePaths {
		if p = filepath.Clean("/" + p)[1:]; p != "" {
			stores = append(stores, p)
		}
	}
	if err := checkStorePaths(name, l.Name, stores); err != nil {
		return nil, err
	}
	if l.Keep < 0 {
		return nil, fmt.Errorf("rw layer %s: keep %d previous layers: the number cannot be negative", name, l.Keep)
	}
	if l.Top == "" {
		return nil, errors.New("rw layer: no btrfs top level given")
	}
	id, err := btrfs.SubvolID(l.Top)
	if err != nil {
		return nil, fmt.Errorf("rw layer: %s must be the btrfs top level: %w", l.Top, err)
	}
	if id != btrfs.TopLevelID {
		return nil, fmt.Errorf("rw layer: %s is subvolume %d, not the btrfs top level: mount the device with -o subvolid=5 there", l.Top, id)
	}
	c := &layerCtx{
		top: l.Top, name: name, dockerPath: dp, storePaths: stores, image: l.Image, adoptFrom: l.AdoptFrom, lastGood: l.LastGood,
		dirRel: filepath.Dir(name), base: filepath.Base(name),
		statePath: filepath.Join(l.Top, layout.StateDir, LayerStateFile),
		keep:      l.Keep, log: l.logf, hook: l.hook,
	}
	c.dirAbs = filepath.Join(l.Top, c.dirRel)
	g, err := c.loadGuard()
	if err != nil {
		return nil, err
	}
	reason, link, err := g.checkChain(c.top, c.name)
	if err != nil {
		return nil, err
	}
	if reason != "" {
		return nil, &NameError{Name: l.Name, Reason: reason, Symlink: link}
	}
	c.guard = g
	return c, nil
}

// NameError is an rw layer name that cannot be used: its rotation would
// touch something that is not a layer. It carries no advice: the boot says
// which kernel parameter to change, the host tool which flag.
type NameError struct {
	Name   string // as given
	Reason string // e.g. "names the top level, not a layer"
	// Symlink is the symbolic link NAME's directory is reached through,
	// when that is the reason (absolute).
	Symlink string
}

func (e *NameError) Error() string { return fmt.Sprintf("rw layer %q %s", e.Name, e.Reason) }

// checkLayerName refuses names whose rotation would touch something that
// is not a layer: the top level, the Docker data root or anything around
// it, dockroot's own state, and names of the rotation scheme itself.
func checkLayerName(name, raw, dockerPath string) error {
	inside := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	reason := ""
	switch {
	case name == "" || name == ".":
		reason = "names the top level, not a layer"
	case inside(name, dockerPath):
		reason = fmt.Sprintf("is inside the Docker data root %s", dockerPath)
	case inside(dockerPath, name):
		reason = fmt.Sprintf("contains the Docker data root %s: rotating it would move Docker's images", dockerPath)
	case inside(name, layout.StateDir):
		reason = fmt.Sprintf("is inside dockroot's state directory %s", layout.StateDir)
	case strings.Contains(filepath.Base(name), prevInfix) || strings.HasSuffix(name, tmpSuffix) ||
		strings.HasSuffix(name, adoptedSuffix) || strings.HasSuffix(name, failedSuffix):
		reason = fmt.Sprintf("is one of dockroot's rotation names (containing %q or ending in %q, %q or %q)", prevInfix, tmpSuffix, adoptedSuffix, failedSuffix)
	default:
		return nil
	}
	return &NameError{Name: raw, Reason: reason}
}

// checkStorePaths refuses a layer name inside or above another image
// store's root: rotating it would move that store's images.
func checkStorePaths(name, raw string, stores []string) error {
	inside := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	for _, st := range stores {
		switch {
		case inside(name, st):
			return &NameError{Name: raw, Reason: fmt.Sprintf("is inside the image store %s", st)}
		case inside(st, name):
			return &NameError{Name: raw, Reason: fmt.Sprintf("contains the image store %s: rotating it would move its images", st)}
		}
	}
	return nil
}

func (c *layerCtx) logf(format string, args ...any) { c.log(format, args...) }

// at is a named point of Prepare or Commit, where tests inject crashes.
func (c *layerCtx) at(point string) error {
	if c.hook == nil {
		return nil
	}
	return c.hook(point)
}

// rel turns a name in NAME's directory into a path relative to Top.
func (c *layerCtx) rel(name string) string { return filepath.Join(c.dirRel, name) }

func (c *layerCtx) imageSubvolume(imageSubvol string) (string, *btrfs.Info, error) {
	img := filepath.Clean("/" + imageSubvol)[1:]
	abs := filepath.Join(c.top, img)
	ok, err := btrfs.IsSubvolume(abs)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil, fmt.Errorf("image subvolume %s does not exist: the image store names a layer that is gone; pull or rebuild the image: %w", abs, err)
	}
	if err != nil {
		return "", nil, fmt.Errorf("image subvolume %s: %w", abs, err)
	}
	if !ok || img == "" {
		return "", nil, fmt.Errorf("image subvolume %s is not a btrfs subvolume; is the Docker data root using the btrfs storage driver?", abs)
	}
	if img == c.name || strings.HasPrefix(img, c.name+".") {
		return "", nil, fmt.Errorf("image subvolume %s is the rw layer %s itself; point it at the image's subvolume in the Docker data root", img, c.name)
	}
	info, err := btrfs.SubvolInfo(abs)
	if err != nil {
		return "", nil, fmt.Errorf("image subvolume %s: %w", abs, err)
	}
	return img, info, nil
}

// ensureDir creates NAME's parent directory as a plain directory on first
// boot, so rootflags=subvol=@/docker_rwlayer works before @ exists.
func (c *layerCtx) ensureDir() error {
	fi, err := os.Lstat(c.dirAbs)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return &NameError{Name: c.name, Reason: fmt.Sprintf("cannot be made: %s is not a directory", c.dirAbs)}
	case !errors.Is(err, os.ErrNotExist):
		return layerOpError("inspect", c.dirAbs, err)
	}
	if err := os.MkdirAll(c.dirAbs, 0o755); err != nil {
		return layerOpError("create parent directory of the rw layer", c.dirAbs, err)
	}
	c.logf("rw layer: created directory %s", c.dirRel)
	return nil
}

// layerSlot is what one of the rotation names holds.
type layerSlot struct {
	rel   string // relative to Top
	what  string
	id    uint64 // 0 unless a subvolume
	uuid  string
	puuid string // parent UUID: what it was snapshotted from
	owned bool
}

type layerScan struct {
	current, tmp *layerSlot
	prevs        map[int]*layerSlot
	adopted      *layerSlot // NAME.adopted
	failed       *layerSlot // NAME.failed
}

func (s *layerScan) prevIndices() []int {
	var ns []int
	for n := range s.prevs {
		ns = append(ns, n)
	}
	sort.Ints(ns)
	return ns
}

func (s *layerScan) all() []*layerSlot {
	var out []*layerSlot
	if s.current != nil {
		out = append(out, s.current)
	}
	for _, n := range s.prevIndices() {
		out = append(out, s.prevs[n])
	}
	if s.tmp != nil {
		out = append(out, s.tmp)
	}
	if s.adopted != nil {
		out = append(out, s.adopted)
	}
	if s.failed != nil {
		out = append(out, s.failed)
	}
	return out
}

func (s *layerScan) rotation(base string, keep int) rotation {
	r := rotation{Base: base, Keep: keep, Current: s.current != nil, Prevs: s.prevIndices(), Failed: s.failed != nil}
	if s.tmp != nil {
		r.Tmp = tmpPending
	}
	return r
}

// scan reads NAME's directory for NAME, NAME.prev.N, the temporary name,
// NAME.adopted and NAME.failed. Cost: one readdir plus a stat per entry, whatever the layers hold.
func (c *layerCtx) scan(st *layerState) (*layerScan, error) {
	sc := &layerScan{prevs: map[int]*layerSlot{}}
	entries, err := os.ReadDir(c.dirAbs)
	if errors.Is(err, os.ErrNotExist) {
		return sc, nil
	}
	if err != nil {
		return nil, layerOpError("read directory", c.dirAbs, err)
	}
	for _, e := range entries {
		name := e.Name()
		n, isPrev := prevIndex(c.base, name)
		if name != c.base && name != tmpName(c.base) && name != c.base+adoptedSuffix && name != c.base+failedSuffix && !isPrev {
			continue
		}
		s, err := c.slot(st, c.rel(name))
		if err != nil {
			return nil, err
		}
		switch {
		case name == c.base:
			sc.current = s
		case isPrev:
			sc.prevs[n] = s
		case name == c.base+adoptedSuffix:
			sc.adopted = s
		case name == c.base+failedSuffix:
			sc.failed = s
		default:
			sc.tmp = s
		}
	}
	return sc, nil
}

func (c *layerCtx) slot(st *layerState, rel string) (*layerSlot, error) {
	abs := filepath.Join(c.top, rel)
	s := &layerSlot{rel: rel}
	fi, err := os.Lstat(abs)
	if err != nil {
		return nil, layerOpError("inspect", abs, err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		s.what = "a symlink"
		return s, nil
	case !fi.IsDir():
		s.what = "a file"
		return s, nil
	}
	sub, err := btrfs.IsSubvolume(abs)
	if err != nil {
		return nil, layerOpError("inspect", abs, err)
	}
	if !sub {
		s.what = "a plain directory"
		return s, nil
	}
	info, err := btrfs.SubvolInfo(abs)
	if err != nil {
		return nil, layerOpError("inspect", abs, err)
	}
	s.id, s.uuid, s.puuid = info.ID, info.UUID.String(), info.ParentUUID.String()
	s.what = fmt.Sprintf("subvolume %d (uuid %s)", info.ID, s.uuid)
	s.owned = st.owner(s.id, s.uuid) != nil
	return s, nil
}

// checkOwned refuses to go on if any rotation name holds something
// dockroot did not create.
func (c *layerCtx) checkOwned(sc *layerScan) error {
	for _, s := range sc.all() {
		if s.owned {
			continue
		}
		action := "rotate"
		if s == sc.current {
			action = "replace"
		}
		return &NotOwnedError{Path: filepath.Join(c.top, s.rel), What: s.what, Action: action, Layer: c.name, State: c.statePath}
	}
	return nil
}

// bookkeep updates the records of this family's layers from a scan: where
// each is now, whether it has been live, and forgets those no longer under
// any rotation name (deleted, or moved away by the user: then they are the
// user's).
func (c *layerCtx) bookkeep(st *layerState, sc *layerScan) {
	seen := map[uint64]bool{}
	for _, s := range sc.all() {
		r := st.owner(s.id, s.uuid)
		if r == nil {
			continue
		}
		seen[r.ID] = true
		r.Path, r.Family = s.rel, c.name
		if s == sc.current {
			r.Live = true
		}
	}
	kept := st.Layers[:0]
	for _, r := range st.Layers {
		if r.Family == c.name && !seen[r.ID] {
			c.logf("rw layer: forgetting subvolume %d, no longer at %s or its previous names", r.ID, r.Path)
			continue
		}
		kept = append(kept, r)
	}
	st.Layers = kept
}

// recover repairs what an interrupted run left beside NAME: it adopts a
// snapshot whose recording was interrupted, deletes a prepared layer that
// never went live, rotates a displaced old layer into NAME.prev.1 (or
// NAME.adopted, or NAME.failed, as the interrupted commit planned), and
// renumbers and trims the previous layers to Keep.
func (c *layerCtx) recover(st *layerState) error {
	sc, err := c.scan(st)
	if err != nil {
		return err
	}
	tmpRel := c.rel(tmpName(c.base))
	if t := sc.tmp; t != nil && !t.owned && t.id != 0 {
		// Proof that it is ours: the intent recorded before the snapshot
		// names this path and the source it is a snapshot of.
		if started, ok := c.intentFor(st, tmpRel, t.puuid); ok {
			st.Layers = append(st.Layers, layerRecord{ID: t.id, UUID: t.uuid, Family: c.name, Path: tmpRel, Created: started})
			t.owned = true
			c.logf("rw layer: %s (subvolume %d) is a snapshot an interrupted boot made; deleting it", tmpRel, t.id)
		}
	}
	st.dropIntent(tmpRel)
	if err := c.checkOwned(sc); err != nil {
		return err
	}
	c.bookkeep(st, sc)
	rot := sc.rotation(c.base, c.keep)
	if sc.tmp != nil {
		if r := st.owner(sc.tmp.id, sc.tmp.uuid); r != nil && r.Live {
			rot.Tmp, rot.TmpAdopted, rot.TmpFailed = tmpOld, r.Adopted, c.failedTrial(r)
		}
	}
	steps, err := planRotation(rot, false)
	if err != nil {
		return err
	}
	if len(steps) == 0 {
		return nil
	}
	c.logf("rw layer: finishing what an interrupted boot left: %d steps", len(steps))
	for _, s := range steps {
		if err := c.at("recover: " + s.String()); err != nil {
			return err
		}
		if err := c.apply(st, s); err != nil {
			return err
		}
		if s.Kind == stepRename {
			c.logf("rw layer: rotated %s -> %s", c.rel(s.From), c.rel(s.To))
		}
	}
	if err := c.settle(st); err != nil {
		return err
	}
	// The temporary name is empty now, durably: nothing left to prove.
	c.dropIntentMarks(tmpRel)
	return nil
}

// apply runs one planned step.
func (c *layerCtx) apply(st *layerState, s layerStep) error {
	from := filepath.Join(c.dirAbs, s.From)
	to := filepath.Join(c.dirAbs, s.To)
	switch s.Kind {
	case stepExchange:
		if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_EXCHANGE); err != nil {
			return layerOpError("exchange (renameat2 RENAME_EXCHANGE) "+from+" with", to, err)
		}
	case stepRename:
		if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE); err != nil {
			return layerOpError("rename "+from+" to", to, err)
		}
	case stepDelete:
		return c.deleteOwned(st, c.rel(s.From))
	default:
		return fmt.Errorf("unknown rotation step %v", s)
	}
	return nil
}

// deleteOwned deletes the layer at rel and what is nested in it, after
// checking it is a subvolume dockroot recorded by ID and UUID, reached
// without symlinks, and neither the top level nor in the Docker data root.
func (c *layerCtx) deleteOwned(st *layerState, rel string) error {
	rel = filepath.Clean("/" + rel)[1:]
	abs := filepath.Join(c.top, rel)
	refuse := func(what string) error {
		return &NotOwnedError{Path: abs, What: what, Action: "delete", State: c.statePath}
	}
	never := func(what string) error {
		return &NotOwnedError{Path: abs, What: what, Action: "delete", State: c.statePath, Protected: true}
	}
	if rel == "" {
		return never("the btrfs top level")
	}
	if rel == c.dockerPath || strings.HasPrefix(rel, c.dockerPath+"/") {
		return never("inside the Docker data root " + c.dockerPath)
	}
	for _, st := range c.storePaths {
		if rel == st || strings.HasPrefix(rel, st+"/") {
			return never("inside the image store " + st)
		}
	}
	// The same by identity: the data root reached through a symlink or
	// spelled another way, the state directory.
	if reason, _, err := c.guard.checkChain(c.top, rel); err != nil {
		return err
	} else if reason != "" {
		return never(strings.TrimPrefix(reason, "is "))
	}
	realTop, err := filepath.EvalSymlinks(c.top)
	if err != nil {
		return layerOpError("resolve", c.top, err)
	}
	realAbs, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return layerOpError("resolve", abs, err)
	}
	if realAbs != filepath.Join(realTop, rel) {
		return never("reached through a symlink (it resolves to " + realAbs + "); name the layer itself")
	}
	s, err := c.slot(st, rel)
	if err != nil {
		return err
	}
	switch {
	case s.id == 0:
		return refuse(s.what)
	case s.id == btrfs.TopLevelID:
		return never("the btrfs top level")
	case !s.owned:
		return refuse(s.what)
	}
	if err := btrfs.DeleteRecursive(abs); err != nil {
		return layerOpError("delete layer", abs, err)
	}
	st.forget(s.id)
	c.logf("rw layer: deleted %s (subvolume %d)", rel, s.id)
	return nil
}

// settle commits the filesystem's transaction, then records the layers as
// they now are. The order matters: btrfs persists the state file's fsync
// through its log tree, possibly ahead of renames and deletions still in
// the running transaction, so the record must not get ahead of the disk.
func (c *layerCtx) settle(st *layerState) error {
	if err := btrfs.Sync(c.top); err != nil {
		return layerOpError("sync", c.top, err)
	}
	sc, err := c.scan(st)
	if err != nil {
		return err
	}
	c.bookkeep(st, sc)
	return st.save(c.statePath)
}

// OpError is a file system operation on a layer (or its state) that failed:
// the operation, the path and the cause. What to do about a full or a
// read-only filesystem depends on where dockroot runs, so the caller says
// it (errors.Is with unix.ENOSPC, unix.EROFS).
type OpError struct {
	Op   string // "snapshot image subvolume X to", "delete layer", …
	Path string
	Err  error
}

func (e *OpError) Error() string { return e.Op + " " + e.Path + ": " + e.Err.Error() }
func (e *OpError) Unwrap() error { return e.Err }

func layerOpError(op, path string, err error) error { return &OpError{Op: op, Path: path, Err: err} }

// failedTrial says whether the layer recorded as r, displaced from NAME,
// belongs to a boot of an image on trial: recorded as made from an image
// other than the last good one. Without a last good image (boot counting
// off, nothing marked yet) or a recorded image there is nothing to tell
// it by, and it rotates as any layer. Recovery from a crash in the commit
// decides again from the same inputs; LastGood changes only when
// `dockroot mark-good` runs in a booted system, and if that happened in
// between, the layer's image is good now and rotating it is right.
func (c *layerCtx) failedTrial(r *layerRecord) bool {
	return c.lastGood != "" && r != nil && !r.Adopted && r.Image != "" && r.Image != c.lastGood
}

// shortImage is an image ID as `docker images` shows it.
func shortImage(id string) string {
	if h, ok := strings.CutPrefix(id, "sha256:"); ok && len(h) > 12 {
		return h[:12]
	}
	return id
}
