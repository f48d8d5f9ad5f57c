// Package graphdriver reads Docker's classic image store with the btrfs
// graph driver, offline, from the files dockerd wrote under its data root:
// repositories.json → image config → chain ID → layerdb cache-id → the
// top layer's subvolume. It runs at boot (no daemon, no cgo) and in the
// host tool, and passes snapshot/storetest.
//
// It must not import snapshot/stores, the boot (hook), the host tool's
// packages or any Docker client; its errors carry operands, not advice.
package graphdriver

import (
	"bytes"
	"crypto/sha256"
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

// Paths inside the Docker data root written by dockerd's classic image
// store with the btrfs graph driver (moby daemon/images, image/store.go,
// layer/filestore.go, reference/store.go, daemon/graphdriver/btrfs).
const (
	driverName   = "btrfs"
	imageDir     = "image/" + driverName
	reposFile    = imageDir + "/repositories.json"
	imagedbDir   = imageDir + "/imagedb/content/sha256"
	layerdbDir   = imageDir + "/layerdb/sha256"
	subvolumeDir = driverName + "/subvolumes"
)

// graphDriverStore reads the classic graph-driver image store offline.
// Every read goes through fsys, rooted at the Docker data root, so the
// parsers run on any fs.FS.
type graphDriverStore struct {
	fsys       fs.FS
	dockerPath string // data root relative to the btrfs top level
	where      string // data root as shown in messages
}

// New opens the classic btrfs graph-driver store of the
// Docker data root dockerPath, relative to top, where the btrfs top level
// (subvolid=5) is mounted. Nothing is read until Resolve or List.
func New(top, dockerPath string) snapshot.Store {
	root := filepath.Join(top, dockerPath)
	return NewFS(snapshot.StoreDirFS(root), dockerPath, root)
}

// NewFS is New over fsys, rooted at the
// Docker data root; where names that root in messages.
func NewFS(fsys fs.FS, dockerPath, where string) snapshot.Store {
	return &graphDriverStore{fsys: fsys, dockerPath: path.Clean(filepath.ToSlash(dockerPath)), where: where}
}

func (s *graphDriverStore) Name() string { return layout.StoreGraphDriver }

func (s *graphDriverStore) file(name string) string {
	return filepath.Join(s.where, filepath.FromSlash(name))
}

func (s *graphDriverStore) describe() string {
	return fmt.Sprintf("the Docker store at %s (btrfs graph driver)", s.where)
}

func (s *graphDriverStore) Resolve(ref string) (*snapshot.Image, error) {
	ref = strings.TrimSpace(ref)
	if err := Detect(s.fsys, s.where); err != nil {
		return nil, err
	}
	tags, err := s.readTags()
	if err != nil {
		return nil, err
	}
	if id, ok := snapshot.ParseImageID(ref); ok {
		return s.resolveByID(id, id, tags, false)
	}
	// As dockerd's GetImage does, a name wins over an ID prefix.
	r, refErr := snapshot.ParseRef(ref)
	if refErr == nil {
		if id, ok := tags.byRef[r.String()]; ok {
			return s.resolveByID(r.String(), id, tags, true)
		}
		if r.Digest != "" {
			return s.resolvePinnedID(ref, r, tags)
		}
	}
	if prefix, ok := snapshot.ParseIDPrefix(ref); ok {
		id, err := s.findPrefix(ref, prefix, tags)
		if err != nil {
			return nil, err
		}
		if id != "" {
			return s.resolveByID(id, id, tags, false)
		}
	} else if refErr != nil {
		return nil, refErr
	}
	nf := &snapshot.NotFoundError{Ref: ref, Store: s.describe(), Available: snapshot.FamiliarTags(tags.refs), Hint: tags.missing}
	if nf.Hint == "" && isHex(strings.TrimPrefix(ref, "sha256:")) && len(strings.TrimPrefix(ref, "sha256:")) < snapshot.MinIDPrefix {
		nf.Hint = fmt.Sprintf("image-ID prefixes need at least %d hex digits", snapshot.MinIDPrefix)
	}
	return nil, nf
}

func (s *graphDriverStore) List() ([]snapshot.Image, error) {
	if err := Detect(s.fsys, s.where); err != nil {
		return nil, err
	}
	tags, err := s.readTags()
	if err != nil {
		return nil, err
	}
	out := make([]snapshot.Image, 0, len(tags.refs))
	for _, r := range tags.refs {
		id := tags.byRef[r.String()]
		img, err := s.resolveByID(r.String(), id, tags, true)
		if err != nil {
			img = &snapshot.Image{Ref: r.String(), ID: id, Tags: snapshot.FamiliarTags(tags.byID[id]), Problem: err.Error()}
			if cfg, data, cerr := s.readConfig(id); cerr == nil && verifyConfig(id, data) == nil {
				img.Created, img.DiffIDs = cfg.Created, cfg.RootFS.DiffIDs
			}
		}
		out = append(out, *img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// resolvePinnedID resolves name@sha256:<digest> when Docker recorded no
// such manifest digest for that repository: the digest may be the image
// ID (what `docker images --digests` and `docker inspect` show as Id), and
// then it pins that image, but only if the repository itself has a tag or
// digest reference for it. Anything else is refused: a pin must never
// resolve to an image the named repository does not hold, nor through a
// manifest digest Docker recorded under another repository (registries
// give the same manifest different meanings per repository).
func (s *graphDriverStore) resolvePinnedID(ref string, r snapshot.Ref, tags *tagIndex) (*snapshot.Image, error) {
	var mine []string // the repository's references, "desk:1 -> 0123456789ab"
	for _, t := range tags.refs {
		if t.Name() != r.Name() {
			continue
		}
		id := tags.byRef[t.String()]
		if id == r.Digest {
			return s.resolveByID(r.String(), id, tags, true)
		}
		mine = append(mine, t.Familiar()+" -> image "+shortID(id))
	}
	nf := &snapshot.NotFoundError{Ref: ref, Store: s.describe(), Available: snapshot.FamiliarTags(tags.refs), Hint: tags.missing}
	if nf.Hint == "" {
		name := r.FamiliarName()
		if len(mine) == 0 {
			nf.Hint = fmt.Sprintf("the store has no repository %s; a digest pin names a repository and either a manifest digest Docker recorded for it or the ID of one of its images", name)
		} else {
			nf.Hint = fmt.Sprintf("%s is neither a manifest digest Docker recorded for %s nor the ID of an image %s has a tag for; %s holds: %s",
				r.Digest, name, name, name, strings.Join(mine, ", "))
		}
	}
	return nil, nf
}

// resolveByID follows an image ID through the config, the chain ID and the
// layer's cache-id to its subvolume. fromTag says the ID came from
// repositories.json, where a missing config means corruption, not absence.
func (s *graphDriverStore) resolveByID(ref, id string, tags *tagIndex, fromTag bool) (*snapshot.Image, error) {
	name := strings.TrimPrefix(ref, "docker.io/library/")
	cfg, data, err := s.readConfig(id)
	if errors.Is(err, fs.ErrNotExist) {
		if fromTag {
			return nil, fmt.Errorf("image %s: %s maps it to %s but its config %s is missing: %w; remove the tag (docker rmi %s) and pull or build the image again",
				name, s.file(reposFile), id, s.file(configPath(id)), snapshot.ErrCorrupt, name)
		}
		return nil, &snapshot.NotFoundError{Ref: ref, Store: s.describe(), Available: snapshot.FamiliarTags(tags.refs), Hint: tags.missing}
	}
	if err != nil {
		return nil, err
	}
	if err := verifyConfig(id, data); err != nil {
		return nil, fmt.Errorf("image %s: config %s: %w; remove the image (docker rmi -f %s) and pull or build it again",
			name, s.file(configPath(id)), err, shortID(id))
	}
	img := &snapshot.Image{Ref: ref, ID: id, DiffIDs: cfg.RootFS.DiffIDs, Created: cfg.Created, Tags: snapshot.FamiliarTags(tags.byID[id])}
	if len(img.DiffIDs) == 0 {
		return nil, fmt.Errorf("image %s (%s): %w: it was built FROM scratch with metadata only, so there is no root filesystem to boot; add files to it (COPY/ADD) or choose another image",
			name, shortID(id), snapshot.ErrNoLayers)
	}
	if img.ChainID, err = snapshot.ChainID(img.DiffIDs); err != nil {
		return nil, fmt.Errorf("image %s: config %s: %w: %w", name, s.file(configPath(id)), err, snapshot.ErrCorrupt)
	}
	cacheFile := layerdbDir + "/" + strings.TrimPrefix(img.ChainID, "sha256:") + "/cache-id"
	raw, err := s.readFile(cacheFile, maxCacheIDSize)
	if serr := (*snapshot.StoreFileError)(nil); errors.As(err, &serr) {
		return nil, fmt.Errorf("image %s: top layer %s: %w", name, img.ChainID, err)
	}
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err // the message names the file in full
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: top layer %s: read %s: %w (%w: the layer database is incomplete, e.g. after an interrupted pull or rmi); pull or build the image again",
			name, img.ChainID, s.file(cacheFile), err, snapshot.ErrCorrupt)
	}
	cacheID := string(bytes.TrimSpace(raw))
	if cacheID == "" || cacheID == "." || cacheID == ".." || strings.ContainsAny(cacheID, "/\\\x00") {
		return nil, fmt.Errorf("image %s: %s holds %q, not a subvolume name: %w; pull or build the image again",
			name, s.file(cacheFile), cacheID, snapshot.ErrCorrupt)
	}
	sub := subvolumeDir + "/" + cacheID
	fi, err := fs.Stat(s.fsys, sub)
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err
	}
	if err == nil && !fi.IsDir() {
		err = errors.New("not a directory")
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: layer subvolume %s (cache-id from %s): %w (%w); pull or build the image again",
			name, s.file(sub), s.file(cacheFile), err, snapshot.ErrCorrupt)
	}
	img.Subvolume = path.Join(s.dockerPath, sub)
	return img, nil
}

// findPrefix returns the one image whose ID starts with prefix, "" when
// none does, and an error naming the candidates when several do.
func (s *graphDriverStore) findPrefix(ref, prefix string, tags *tagIndex) (string, error) {
	entries, err := fs.ReadDir(s.fsys, imagedbDir)
	if err != nil {
		return "", fmt.Errorf("list image configs in %s: %w", s.file(imagedbDir), err)
	}
	var found []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			found = append(found, "sha256:"+e.Name())
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	var cands []string
	for _, id := range found {
		c := id
		if t := snapshot.FamiliarTags(tags.byID[id]); len(t) > 0 {
			c += " (" + strings.Join(t, ", ") + ")"
		}
		cands = append(cands, c)
	}
	return "", fmt.Errorf("image-ID prefix %q is ambiguous in %s, it matches: %s; give more digits or a tag",
		ref, s.describe(), strings.Join(cands, "; "))
}

func configPath(id string) string { return imagedbDir + "/" + strings.TrimPrefix(id, "sha256:") }

func shortID(id string) string {
	h := strings.TrimPrefix(id, "sha256:")
	if len(h) > snapshot.MinIDPrefix {
		h = h[:snapshot.MinIDPrefix]
	}
	return h
}

func isHex(s string) bool { return snapshot.IsLowerHex(s) }

// imageConfig is the part of an image config (the OCI/Docker image JSON)
// that locates its layers.
type imageConfig struct {
	Created time.Time `json:"created"`
	RootFS  struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

func (s *graphDriverStore) readConfig(id string) (*imageConfig, []byte, error) {
	p := configPath(id)
	data, err := s.readFile(p, maxConfigSize)
	if serr := (*snapshot.StoreFileError)(nil); errors.As(err, &serr) {
		return nil, nil, err
	}
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err // the message names the file in full
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read image config %s: %w", s.file(p), err)
	}
	cfg, err := parseImageConfig(data)
	if err != nil {
		// A digest mismatch explains a parse error better; report that first.
		if verr := verifyConfig(id, data); verr != nil {
			return nil, nil, fmt.Errorf("image config %s: %w; remove the image (docker rmi -f %s) and pull or build it again", s.file(p), verr, shortID(id))
		}
		return nil, nil, fmt.Errorf("image config %s: %w", s.file(p), err)
	}
	return cfg, data, nil
}

// parseImageConfig decodes an image config and checks its rootfs.
func parseImageConfig(data []byte) (*imageConfig, error) {
	var cfg imageConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v: %w", err, snapshot.ErrCorrupt)
	}
	if cfg.RootFS.Type != "layers" {
		return nil, fmt.Errorf("rootfs.type is %q, want \"layers\": %w", cfg.RootFS.Type, snapshot.ErrCorrupt)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := snapshot.CheckDigest(d); err != nil {
			return nil, fmt.Errorf("rootfs.diff_ids: %w: %w", err, snapshot.ErrCorrupt)
		}
	}
	return &cfg, nil
}

// verifyConfig checks that the config hashes to the image ID: Docker names
// image configs by their sha256 (content addressing), so anything else is
// corruption of the file.
func verifyConfig(id string, data []byte) error {
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != id {
		return fmt.Errorf("content hashes to %s, not to its image ID %s: %w: the image config was modified or damaged", got, id, snapshot.ErrCorrupt)
	}
	return nil
}

// tagIndex is repositories.json, normalised.
type tagIndex struct {
	refs    []snapshot.Ref            // every tag and digest reference
	byRef   map[string]string         // snapshot.Ref.String() -> image ID
	byID    map[string][]snapshot.Ref // image ID -> its references
	missing string                    // set when repositories.json does not exist
}

func (s *graphDriverStore) readTags() (*tagIndex, error) {
	data, err := s.readFile(reposFile, maxRepositoriesSize)
	if errors.Is(err, fs.ErrNotExist) {
		// dockerd writes the file on the first tag, so a store that never
		// tagged an image has none: that is an empty store, not corruption.
		idx, _ := parseRepositories([]byte(`{}`))
		idx.missing = s.file(reposFile) + " does not exist: no image was ever tagged in this store"
		return idx, nil
	}
	if serr := (*snapshot.StoreFileError)(nil); errors.As(err, &serr) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.file(reposFile), err)
	}
	idx, err := parseRepositories(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; restore it from a backup, or move it aside, restart dockerd and tag the images again (docker tag <image-id> name:tag)",
			s.file(reposFile), err)
	}
	return idx, nil
}

// parseRepositories decodes Docker's reference store. dockerd 20.10 writes
//
//	{"Repositories": {"desk": {"desk:1": "sha256:…"},
//	                  "registry.example:5000/team/desk": {"registry.example:5000/team/desk:1": "sha256:…"}}}
//
// keyed by familiar name, then familiar reference (tag or @digest). The
// inner keys are parsed and normalised, so full-form keys work as well.
func parseRepositories(data []byte) (*tagIndex, error) {
	var doc struct {
		Repositories map[string]map[string]string
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("invalid JSON (%v): %w", err, snapshot.ErrCorrupt)
	}
	idx := &tagIndex{byRef: map[string]string{}, byID: map[string][]snapshot.Ref{}}
	var names []string
	for repo, refs := range doc.Repositories {
		for key, id := range refs {
			r, err := snapshot.ParseRef(key)
			if err != nil {
				return nil, fmt.Errorf("repository %q: reference %q: %v: %w", repo, key, err, snapshot.ErrCorrupt)
			}
			full, ok := snapshot.ParseImageID(id)
			if !ok || !strings.HasPrefix(id, "sha256:") {
				return nil, fmt.Errorf("reference %q: image ID %q is not sha256:<64 hex>: %w", key, id, snapshot.ErrCorrupt)
			}
			name := r.String()
			idx.refs = append(idx.refs, r)
			names = append(names, name)
			idx.byRef[name] = full
			idx.byID[full] = append(idx.byID[full], r)
		}
	}
	// Sorted by name, each rendered once (rendering in the comparator was
	// most of a 1000-tag store's parse).
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return names[order[i]] < names[order[j]] })
	sorted := make([]snapshot.Ref, len(order))
	for i, k := range order {
		sorted[i] = idx.refs[k]
	}
	idx.refs = sorted
	return idx, nil
}

// Detect checks that the data root holds a btrfs graph-driver image store,
// and otherwise says which store it holds and how to switch Docker to one
// dockroot can read (a *snapshot.DataRootError).
func Detect(fsys fs.FS, where string) error {
	fi, err := fs.Stat(fsys, imageDir)
	if err == nil && fi.IsDir() {
		return nil
	}
	if serr := storeOpenError(filepath.Join(where, imageDir), 0, err); serr != nil {
		return serr
	}
	if _, err := fs.Stat(fsys, "."); err != nil {
		return &snapshot.DataRootError{Path: where, Missing: true, Err: err,
			Reason: ": " + err.Error()}
	}
	const fix = `put {"storage-driver": "btrfs"} in /etc/docker/daemon.json, restart dockerd and pull or build the image again`
	entries, _ := fs.ReadDir(fsys, "image")
	var drivers []string
	for _, e := range entries {
		if e.IsDir() {
			drivers = append(drivers, e.Name())
		}
	}
	if len(drivers) > 0 {
		return &snapshot.DataRootError{Path: where, Err: snapshot.ErrUnsupportedStore,
			Reason: fmt.Sprintf(" uses the %s storage driver (%s), not btrfs: %v: dockroot boots an image from the btrfs subvolumes the btrfs driver keeps per layer; %s",
				strings.Join(drivers, ", "), filepath.Join(where, "image", drivers[0]), snapshot.ErrUnsupportedStore, fix)}
	}
	if _, err := fs.Stat(fsys, "containerd"); err == nil {
		return &snapshot.DataRootError{Path: where, Err: snapshot.ErrUnsupportedStore,
			Reason: fmt.Sprintf(" has no %s: %v: Docker 29 and later keep images in the containerd image store unless a storage driver is named; read that store instead (dockroot.store=containerd at boot, --store containerd in the CLI) when its snapshotter is btrfs, or %s",
				filepath.Join(where, imageDir), snapshot.ErrUnsupportedStore, fix)}
	}
	return &snapshot.DataRootError{Path: where, Missing: true, Err: snapshot.ErrUnsupportedStore,
		Reason: fmt.Sprintf(" has no %s: %v: dockerd with the btrfs storage driver has never run there", filepath.Join(where, imageDir), snapshot.ErrUnsupportedStore)}
}
