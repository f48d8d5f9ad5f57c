// Package podman reads the image store of rootful Podman (containers/storage,
// as Podman and Buildah write it) with the btrfs storage driver, offline:
// no Podman, no libpod database, no locks taken. stores.Open picks it for
// dockroot.store=podman and looks in it for dockroot.store=auto; the boot
// and the host tool reach it only through package stores.
//
// With the btrfs driver containers/storage keeps each layer as a btrfs
// subvolume that is a snapshot of its parent plus the layer's changes, so
// the top layer's subvolume holds the image's complete root filesystem.
// The files, relative to the graph root (rootful default
// /var/lib/containers/storage, podman_path= relative to the btrfs top level):
//
//	btrfs-images/images.json          every image: id, digest, names, layer (top layer ID), created, big-data-names, …
//	btrfs-images/<id>/=<base64(key)>  the image's big-data items; key "sha256:<id>" is its config
//	btrfs-layers/layers.json          every layer: id, parent, flags ({"incomplete": true} while being written)
//	btrfs/subvolumes/<layer id>       the layer's subvolume
//
// Only a rootful store can be the boot store: rootless Podman keeps its
// graph root under the user's home directory
// (~/.local/share/containers/storage), owned through a user namespace
// (files owned by subordinate IDs, not by the IDs the booted system would
// see), usually with the overlay driver; dockroot does not boot from it.
//
// It must not import snapshot/stores, the boot (hook), the host tool's
// packages or any Podman client; its errors carry operands, not advice.
package podman

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
)

// Paths inside the graph root written by containers/storage with the btrfs
// driver (containers/storage store.go, images.go, layers.go,
// drivers/btrfs/btrfs.go); verified against Debian's Podman 4.3.1.
const (
	driverName   = "btrfs"
	imagesDir    = driverName + "-images"
	imagesFile   = imagesDir + "/images.json"
	layersFile   = driverName + "-layers/layers.json"
	subvolumeDir = driverName + "/subvolumes"
	// incompleteFlag marks a layer containers/storage is still writing or
	// removing (layers.go incompleteFlag); such a layer is not a root
	// filesystem.
	incompleteFlag = "incomplete"
	// localhostDomain is where Podman puts images built or imported under a
	// short name ("desk" is stored as "localhost/desk:latest").
	localhostDomain = "localhost"
)

// The most bytes read from each kind of file; larger is not a file Podman
// wrote (see snapshot.ReadStoreFile).
const (
	// images.json holds about 3 KB per image (names and big-data
	// listings): 64 MiB is over 20 000 images.
	maxImagesSize = 64 << 20
	// layers.json holds about 500 bytes per layer: 64 MiB is over 100 000.
	maxLayersSize = 64 << 20
	// An image config: the limit registries and containerd put on configs.
	maxConfigSize = 4 << 20
)

type store struct {
	fsys       fs.FS
	podmanPath string // graph root relative to the btrfs top level
	where      string // graph root as shown in messages
}

// New opens the Podman store with the btrfs driver whose graph root is
// podmanPath, relative to top, where the btrfs top level (subvolid=5) is
// mounted. Nothing is read until Resolve or List.
func New(top, podmanPath string) snapshot.Store {
	root := filepath.Join(top, podmanPath)
	return NewFS(snapshot.StoreDirFS(root), podmanPath, root)
}

// NewFS is New over fsys, rooted at the graph root; where names that root
// in messages.
func NewFS(fsys fs.FS, podmanPath, where string) snapshot.Store {
	return &store{fsys: fsys, podmanPath: path.Clean(filepath.ToSlash(podmanPath)), where: where}
}

func (s *store) Name() string { return layout.StorePodman }

func (s *store) file(name string) string { return filepath.Join(s.where, filepath.FromSlash(name)) }

func (s *store) describe() string {
	return fmt.Sprintf("the Podman store at %s (btrfs driver)", s.where)
}

func (s *store) Resolve(ref string) (*snapshot.Image, error) {
	ref = strings.TrimSpace(ref)
	if err := Detect(s.fsys, s.where); err != nil {
		return nil, err
	}
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	img, matched, err := s.lookup(ref, idx)
	if err != nil {
		return nil, err
	}
	return s.resolveImage(matched, img, idx)
}

func (s *store) List() ([]snapshot.Image, error) {
	if err := Detect(s.fsys, s.where); err != nil {
		return nil, err
	}
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []snapshot.Image
	for _, im := range idx.images {
		for _, n := range im.names {
			img, err := s.resolveImage(n.String(), im, idx)
			if err != nil {
				img = &snapshot.Image{Ref: n.String(), ID: "sha256:" + im.ID, Tags: im.tags(), Created: im.Created, Problem: err.Error()}
			}
			out = append(out, *img)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// lookup finds the image ref names, in Podman's order (containers/common
// libimage Runtime.LookupImage, verified with Podman 4.3.1):
//
//  1. a full image ID, "sha256:<64 hex>" or 64 hex;
//  2. the name: a short name ("desk", "team/desk", without a registry) is
//     tried as localhost/<name> first, then as Docker would normalise it
//     (docker.io/library/desk); a qualified name as given. The tag
//     defaults to latest. A digest (name@sha256:…) matches an image with
//     that manifest digest and a name in that repository;
//  3. a unique image-ID prefix (at least snapshot.MinIDPrefix hex digits);
//  4. for a short name, any name whose repository ends in /<name> with
//     that tag ("base:1" finds localhost/team/base:1), when exactly one
//     image has one (Podman takes the first it lists; dockroot refuses to
//     guess).
//
// Podman also tries the unqualified-search-registries of registries.conf
// in step 2; dockroot reads no host configuration at boot, so a short
// name finds only localhost/ and docker.io images: give the full name for
// others.
//
// It returns the image and the reference it matched, normalised.
func (s *store) lookup(ref string, idx *index) (*imageRecord, string, error) {
	if id, ok := snapshot.ParseImageID(ref); ok {
		if im := idx.byID[strings.TrimPrefix(id, "sha256:")]; im != nil {
			return im, id, nil
		}
		return nil, "", s.notFound(ref, idx, "")
	}
	r, refErr := snapshot.ParseRef(ref)
	var typed string // the repository as given, for short names
	if refErr == nil {
		var short bool
		typed, short = shortName(ref)
		cands := []string{r.Name()}
		if short {
			lr, err := snapshot.ParseRef(localhostDomain + "/" + typed + suffixOf(r))
			if err == nil {
				cands = []string{lr.Name(), r.Name()}
			}
		}
		for _, c := range cands {
			if im, n := idx.match(c, r); im != nil {
				return im, n, nil
			}
		}
	}
	if prefix, ok := snapshot.ParseIDPrefix(ref); ok {
		var found []*imageRecord
		for _, im := range idx.images {
			if strings.HasPrefix(im.ID, prefix) {
				found = append(found, im)
			}
		}
		switch len(found) {
		case 1:
			return found[0], "sha256:" + found[0].ID, nil
		case 0:
		default:
			var cands []string
			for _, im := range found {
				cands = append(cands, im.describe())
			}
			return nil, "", fmt.Errorf("image-ID prefix %q is ambiguous in %s, it matches: %s",
				ref, s.describe(), strings.Join(cands, "; "))
		}
	} else if refErr != nil {
		return nil, "", refErr
	}
	if refErr == nil && typed != "" {
		var found []*imageRecord
		var names []string
		for _, im := range idx.images {
			for _, n := range im.names {
				if strings.HasSuffix(n.Name(), "/"+typed) && nameMatches(n, r, im) {
					found = append(found, im)
					names = append(names, n.String())
					break
				}
			}
		}
		switch len(found) {
		case 1:
			return found[0], names[0], nil
		case 0:
		default:
			return nil, "", fmt.Errorf("image %q is ambiguous in %s: as a short name it matches %s",
				ref, s.describe(), strings.Join(names, ", "))
		}
	}
	hint := ""
	if h := strings.TrimPrefix(ref, "sha256:"); snapshot.IsLowerHex(h) && len(h) < snapshot.MinIDPrefix {
		hint = fmt.Sprintf("image-ID prefixes need at least %d hex digits", snapshot.MinIDPrefix)
	}
	return nil, "", s.notFound(ref, idx, hint)
}

func (s *store) notFound(ref string, idx *index, hint string) error {
	if hint == "" {
		hint = idx.missing
	}
	return &snapshot.NotFoundError{Ref: ref, Store: s.describe(), Available: idx.tags(), Hint: hint}
}

// shortName returns the repository of ref as typed (no tag or digest) and
// whether it is a short name: one without a registry, which Podman looks
// up under localhost/ first (containers/image pkg/shortnames).
func shortName(ref string) (string, bool) {
	name, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i+1:], "/") {
		name = name[:i]
	}
	first, _, hasSlash := strings.Cut(name, "/")
	if hasSlash && (strings.ContainsAny(first, ".:") || first == localhostDomain) {
		return "", false
	}
	return name, true
}

func suffixOf(r snapshot.Ref) string {
	if r.Digest != "" {
		return "@" + r.Digest
	}
	return ":" + r.Tag
}

// resolveImage follows an image's top layer through layers.json to its
// subvolume.
func (s *store) resolveImage(ref string, im *imageRecord, idx *index) (*snapshot.Image, error) {
	name := ref
	img := &snapshot.Image{Ref: ref, ID: "sha256:" + im.ID, Tags: im.tags(), Created: im.Created}
	if im.TopLayer == "" {
		return nil, fmt.Errorf("image %s (%s): %w: %s records no layer (an image built FROM scratch with metadata only), so there is no root filesystem to boot",
			name, shortID(im.ID), snapshot.ErrNoLayers, s.file(imagesFile))
	}
	// Bottom layer first, checking the whole chain: containers/storage
	// marks a layer incomplete until it is fully written, and a layer
	// whose parent is gone has lost part of its history.
	var chain []*layerRecord
	seen := map[string]bool{}
	for id := im.TopLayer; id != ""; {
		l := idx.layers[id]
		switch {
		case l == nil && id == im.TopLayer:
			return nil, fmt.Errorf("image %s: its top layer %s is not in %s: %w; remove the image (podman rmi -f %s) and pull or build it again",
				name, id, s.file(layersFile), snapshot.ErrCorrupt, shortID(im.ID))
		case l == nil:
			return nil, fmt.Errorf("image %s: layer %s has parent %s, which is not in %s: %w; remove the image (podman rmi -f %s) and pull or build it again",
				name, chain[0].ID, id, s.file(layersFile), snapshot.ErrCorrupt, shortID(im.ID))
		case seen[id]:
			return nil, fmt.Errorf("image %s: the parents of layer %s in %s form a loop: %w", name, id, s.file(layersFile), snapshot.ErrCorrupt)
		case l.incomplete():
			return nil, fmt.Errorf("image %s: layer %s is marked incomplete in %s (an interrupted pull, build or removal): %w; pull or build the image again",
				name, id, s.file(layersFile), snapshot.ErrCorrupt)
		}
		seen[id] = true
		chain = append([]*layerRecord{l}, chain...)
		id = l.Parent
	}
	// Podman names layers by their own IDs (random, or derived from the
	// pull), not by the OCI chain ID: ChainID is the top layer's ID, which
	// names its subvolume.
	img.ChainID = "sha256:" + im.TopLayer
	diffIDs, created, err := s.readConfig(im)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if diffIDs == nil {
		// No config recorded: the layers' own diff digests, when all are
		// there, are the same list.
		for _, l := range chain {
			if snapshot.CheckDigest(l.DiffDigest) != nil {
				diffIDs = nil
				break
			}
			diffIDs = append(diffIDs, l.DiffDigest)
		}
	}
	img.DiffIDs = diffIDs
	if img.Created.IsZero() {
		img.Created = created
	}
	sub := subvolumeDir + "/" + im.TopLayer
	fi, err := fs.Stat(s.fsys, sub)
	if serr := snapshot.StoreOpenError(s.file(sub), 0, err); serr != nil {
		return nil, fmt.Errorf("image %s: top layer %s: %w", name, im.TopLayer, serr)
	}
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err // the message names the subvolume in full
	}
	if err == nil && !fi.IsDir() {
		err = errors.New("not a directory")
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: layer subvolume %s (top layer in %s): %w (%w); remove the image (podman rmi -f %s) and pull or build it again",
			name, s.file(sub), s.file(imagesFile), err, snapshot.ErrCorrupt, shortID(im.ID))
	}
	img.Subvolume = path.Join(s.podmanPath, sub)
	return img, nil
}

// readConfig returns the config's diff IDs and creation time, or nil when
// the image records no config under its ID. containers/storage keeps
// big-data items in btrfs-images/<id>/ under "=" + base64 of the key when
// the key is not a plain file name (images.go makeBigDataBaseName); Podman
// stores the config under its digest, which is the image ID.
func (s *store) readConfig(im *imageRecord) ([]string, time.Time, error) {
	key := "sha256:" + im.ID
	found := false
	for _, n := range im.BigDataNames {
		found = found || n == key
	}
	if !found {
		return nil, time.Time{}, nil
	}
	p := imagesDir + "/" + im.ID + "/=" + base64.StdEncoding.EncodeToString([]byte(key))
	data, err := snapshot.ReadStoreFile(s.fsys, p, s.file(p), maxConfigSize)
	if serr := (*snapshot.StoreFileError)(nil); errors.As(err, &serr) {
		return nil, time.Time{}, err
	}
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read image config %s: %w (%w); remove the image (podman rmi -f %s) and pull or build it again",
			s.file(p), err, snapshot.ErrCorrupt, shortID(im.ID))
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != key {
		return nil, time.Time{}, fmt.Errorf("image config %s hashes to %s, not to %s: %w: it was modified or damaged; remove the image (podman rmi -f %s) and pull or build it again",
			s.file(p), got, key, snapshot.ErrCorrupt, shortID(im.ID))
	}
	var cfg struct {
		Created time.Time `json:"created"`
		RootFS  struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, time.Time{}, fmt.Errorf("image config %s: invalid JSON (%v): %w", s.file(p), err, snapshot.ErrCorrupt)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := snapshot.CheckDigest(d); err != nil {
			return nil, time.Time{}, fmt.Errorf("image config %s: rootfs.diff_ids: %w: %w", s.file(p), err, snapshot.ErrCorrupt)
		}
	}
	if cfg.RootFS.DiffIDs == nil {
		cfg.RootFS.DiffIDs = []string{}
	}
	return cfg.RootFS.DiffIDs, cfg.Created, nil
}

func shortID(id string) string {
	if len(id) > snapshot.MinIDPrefix {
		return id[:snapshot.MinIDPrefix]
	}
	return id
}

// Detect checks that the graph root holds a containers/storage store with
// the btrfs driver, and otherwise says which driver it uses and how to
// switch Podman to btrfs (a *snapshot.DataRootError).
func Detect(fsys fs.FS, where string) error {
	fi, err := fs.Stat(fsys, imagesDir)
	if err == nil && fi.IsDir() {
		return nil
	}
	if serr := snapshot.StoreOpenError(filepath.Join(where, imagesDir), 0, err); serr != nil {
		return serr
	}
	if _, err := fs.Stat(fsys, "."); err != nil {
		return &snapshot.DataRootError{Path: where, Missing: true, Err: err, Kind: layout.StorePodman,
			Reason: ": " + err.Error()}
	}
	// containers/storage names its metadata directories <driver>-images,
	// <driver>-layers and <driver>-containers.
	entries, _ := fs.ReadDir(fsys, ".")
	var drivers []string
	for _, e := range entries {
		if d, ok := strings.CutSuffix(e.Name(), "-images"); ok && e.IsDir() && d != "" {
			drivers = append(drivers, d)
		}
	}
	if len(drivers) > 0 {
		return &snapshot.DataRootError{Path: where, Err: snapshot.ErrUnsupportedStore, Kind: layout.StorePodman,
			Reason: fmt.Sprintf(" uses the %s storage driver (%s), not btrfs: %v: dockroot boots an image from the btrfs subvolumes the btrfs driver keeps per layer; "+
				`set driver = "btrfs" in the [storage] table of /etc/containers/storage.conf, run podman system reset (it deletes every image and container of this store) and pull or build the images again`,
				strings.Join(drivers, ", "), filepath.Join(where, drivers[0]+"-images"), snapshot.ErrUnsupportedStore)}
	}
	return &snapshot.DataRootError{Path: where, Missing: true, Err: snapshot.ErrUnsupportedStore, Kind: layout.StorePodman,
		Reason: fmt.Sprintf(" has no %s: %v: Podman with the btrfs storage driver has never stored an image there",
			filepath.Join(where, imagesDir), snapshot.ErrUnsupportedStore)}
}
