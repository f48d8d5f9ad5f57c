package podman

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/dockroot/dockroot/snapshot"
)

// imageRecord is the part of an images.json entry (containers/storage
// images.go Image) that locates an image and names it.
type imageRecord struct {
	ID       string   `json:"id"`
	Digest   string   `json:"digest"`
	Names    []string `json:"names"`
	TopLayer string   `json:"layer"`
	// BigDataNames lists the image's big-data items (config, manifests,
	// signatures); BigDataDigests their digests.
	BigDataNames   []string          `json:"big-data-names"`
	BigDataDigests map[string]string `json:"big-data-digests"`
	Created        time.Time         `json:"created"`

	names   []snapshot.Ref // Names, parsed
	digests []string       // manifest digests, see parseImages
}

// layerRecord is the part of a layers.json entry (containers/storage
// layers.go Layer) that chains layers.
type layerRecord struct {
	ID         string         `json:"id"`
	Parent     string         `json:"parent"`
	Flags      map[string]any `json:"flags"`
	DiffDigest string         `json:"diff-digest"`
}

func (l *layerRecord) incomplete() bool {
	v, ok := l.Flags[incompleteFlag]
	return ok && v != false && v != nil
}

// index is images.json and layers.json, parsed.
type index struct {
	images  []*imageRecord // in file order
	byID    map[string]*imageRecord
	layers  map[string]*layerRecord
	missing string // set when images.json does not exist
}

func (s *store) readIndex() (*index, error) {
	idx := &index{byID: map[string]*imageRecord{}, layers: map[string]*layerRecord{}}
	data, err := snapshot.ReadStoreFile(s.fsys, imagesFile, s.file(imagesFile), maxImagesSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// containers/storage writes images.json on its first change: an
		// empty store, not corruption.
		idx.missing = s.file(imagesFile) + " does not exist: no image was ever stored there"
		return idx, nil
	case err != nil && !errors.As(err, new(*snapshot.StoreFileError)):
		return nil, fmt.Errorf("read %s: %w", s.file(imagesFile), err)
	case err != nil:
		return nil, err
	}
	if idx.images, idx.byID, err = parseImages(data); err != nil {
		return nil, fmt.Errorf("%s: %w", s.file(imagesFile), err)
	}
	data, err = snapshot.ReadStoreFile(s.fsys, layersFile, s.file(layersFile), maxLayersSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Images without layers need no layers.json; any other image is
		// reported as missing its top layer.
		return idx, nil
	case err != nil && !errors.As(err, new(*snapshot.StoreFileError)):
		return nil, fmt.Errorf("read %s: %w", s.file(layersFile), err)
	case err != nil:
		return nil, err
	}
	if idx.layers, err = parseLayers(data); err != nil {
		return nil, fmt.Errorf("%s: %w", s.file(layersFile), err)
	}
	return idx, nil
}

// parseImages decodes images.json. Podman 4.3.1 writes
//
//	[{"id": "<64 hex>", "digest": "sha256:…", "names": ["localhost/desk:1"],
//	  "layer": "<top layer id>", "big-data-names": [...],
//	  "big-data-digests": {...}, "created": "…"}, …]
//
// with names normalised as Docker normalises them (docker.io/library/x) and
// images built under a short name stored as localhost/<name>.
func parseImages(data []byte) ([]*imageRecord, map[string]*imageRecord, error) {
	var recs []*imageRecord
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, nil, fmt.Errorf("invalid JSON (%v): %w", err, snapshot.ErrCorrupt)
	}
	byID := map[string]*imageRecord{}
	var images []*imageRecord
	for i, im := range recs {
		if im == nil {
			return nil, nil, fmt.Errorf("image %d is null: %w", i, snapshot.ErrCorrupt)
		}
		if !isID(im.ID) {
			return nil, nil, fmt.Errorf("image %d: id %q is not 64 hex digits: %w", i, im.ID, snapshot.ErrCorrupt)
		}
		if byID[im.ID] != nil {
			return nil, nil, fmt.Errorf("image %s is listed twice: %w", im.ID, snapshot.ErrCorrupt)
		}
		if im.TopLayer != "" && !isID(im.TopLayer) {
			return nil, nil, fmt.Errorf("image %s: layer %q is not 64 hex digits: %w", im.ID, im.TopLayer, snapshot.ErrCorrupt)
		}
		for _, n := range im.Names {
			r, err := snapshot.ParseRef(n)
			if err != nil {
				return nil, nil, fmt.Errorf("image %s: name %q: %v: %w", im.ID, n, err, snapshot.ErrCorrupt)
			}
			im.names = append(im.names, r)
		}
		sort.Slice(im.names, func(a, b int) bool { return im.names[a].String() < im.names[b].String() })
		// The digests an image answers to (images.go recomputeDigests):
		// its digest, then those of every big-data item whose key starts
		// with "manifest".
		if im.Digest != "" {
			im.digests = append(im.digests, im.Digest)
		}
		for key, d := range im.BigDataDigests {
			if strings.HasPrefix(key, "manifest") {
				im.digests = append(im.digests, d)
			}
		}
		byID[im.ID] = im
		images = append(images, im)
	}
	return images, byID, nil
}

// parseLayers decodes layers.json:
//
//	[{"id": "<64 hex>", "parent": "<64 hex>", "diff-digest": "sha256:…",
//	  "flags": {"incomplete": true}, …}, …]
func parseLayers(data []byte) (map[string]*layerRecord, error) {
	var recs []*layerRecord
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("invalid JSON (%v): %w", err, snapshot.ErrCorrupt)
	}
	layers := map[string]*layerRecord{}
	for i, l := range recs {
		if l == nil {
			return nil, fmt.Errorf("layer %d is null: %w", i, snapshot.ErrCorrupt)
		}
		if !isID(l.ID) || (l.Parent != "" && !isID(l.Parent)) {
			return nil, fmt.Errorf("layer %d: id %q or parent %q is not 64 hex digits: %w", i, l.ID, l.Parent, snapshot.ErrCorrupt)
		}
		if layers[l.ID] != nil {
			return nil, fmt.Errorf("layer %s is listed twice: %w", l.ID, snapshot.ErrCorrupt)
		}
		layers[l.ID] = l
	}
	return layers, nil
}

// isID accepts the IDs Podman gives images and layers: 64 lower-case hex
// digits. A layer ID names its subvolume, so nothing else may pass.
func isID(s string) bool { return len(s) == 64 && snapshot.IsLowerHex(s) }

// match returns the image that has the name repo with r's tag, or, when r
// pins a digest, a name in repo and that manifest digest; and the
// reference it matched. Names are unique in a store (containers/storage
// moves a name to the image it is given to).
func (idx *index) match(repo string, r snapshot.Ref) (*imageRecord, string) {
	for _, im := range idx.images {
		for _, n := range im.names {
			if n.Name() == repo && nameMatches(n, r, im) {
				if r.Digest != "" {
					return im, repo + "@" + r.Digest
				}
				return im, n.String()
			}
		}
	}
	return nil, ""
}

// tags lists every name in the store, as `podman images` shows them
// (repository:tag in full, "localhost/desk:1"), sorted.
func (idx *index) tags() []string {
	out := []string{}
	for _, im := range idx.images {
		out = append(out, im.tags()...)
	}
	sort.Strings(out)
	return out
}

func (im *imageRecord) tags() []string {
	out := make([]string, 0, len(im.names))
	for _, n := range im.names {
		out = append(out, n.String())
	}
	sort.Strings(out)
	return out
}

// describe names an image for a list of candidates: "0123456789ab (localhost/desk:1)".
func (im *imageRecord) describe() string {
	if t := im.tags(); len(t) > 0 {
		return "sha256:" + im.ID + " (" + strings.Join(t, ", ") + ")"
	}
	return "sha256:" + im.ID
}

func (im *imageRecord) hasDigest(d string) bool {
	for _, x := range im.digests {
		if x == d {
			return true
		}
	}
	return false
}

// nameMatches says whether the image im, under its name n, answers to r's
// tag, or to r's digest: one of its manifest digests, or a digest name
// (repo@sha256:…, which a pull by digest records).
func nameMatches(n, r snapshot.Ref, im *imageRecord) bool {
	if r.Digest != "" {
		return n.Digest == r.Digest || im.hasDigest(r.Digest)
	}
	return n.Digest == "" && n.Tag == r.Tag
}
