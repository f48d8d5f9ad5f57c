package containerd

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/dockroot/dockroot/snapshot"
)

// Media types of the blobs on the way from an image's target to its
// config (OCI image spec, and Docker's schema 2 that moby and containerd
// still read).
const (
	mediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
)

func isIndex(mt string) bool    { return mt == mediaOCIIndex || mt == mediaDockerList }
func isManifest(mt string) bool { return mt == mediaOCIManifest || mt == mediaDockerManifest }

// Platform is an OCI platform: os, architecture and variant.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// matches says whether an index entry's platform m can run on p: same os
// and architecture, and for arm64 the only variant, v8, or none (what
// containerd's platform matcher accepts for a linux/arm64 machine).
func (p Platform) matches(m *Platform) bool {
	if m == nil || m.OS != p.OS || m.Architecture != p.Architecture {
		return false
	}
	if p.Variant == "" {
		return m.Variant == "" || p.Architecture == "arm64" && m.Variant == "v8" || p.Architecture == "amd64"
	}
	return m.Variant == p.Variant
}

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType string    `json:"mediaType"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	Platform  *Platform `json:"platform,omitempty"`
}

func (d descriptor) check() error {
	if err := snapshot.CheckDigest(d.Digest); err != nil {
		return err
	}
	if d.Size < 0 || d.Size > maxBlobSize {
		return fmt.Errorf("descriptor %s: size %d out of range", d.Digest, d.Size)
	}
	return nil
}

// maxBlobSize is the largest index, manifest or config read: the limit
// containerd and registries put on manifests and configs.
const maxBlobSize = 4 << 20

// parseIndex decodes an image index (or Docker manifest list) and returns
// the manifest for p: the first that matches, in the index's order, as
// containerd's platform matcher picks among equals. Entries that are not
// manifests (attestations carry platform unknown/unknown) never match.
func parseIndex(data []byte, p Platform) (*descriptor, []string, error) {
	var idx struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, nil, fmt.Errorf("invalid index JSON (%v)", err)
	}
	if idx.SchemaVersion != 2 {
		return nil, nil, fmt.Errorf("index schemaVersion %d, want 2", idx.SchemaVersion)
	}
	var have []string
	var found *descriptor
	for i := range idx.Manifests {
		m := idx.Manifests[i]
		if err := m.check(); err != nil {
			return nil, nil, fmt.Errorf("index entry %d: %v", i, err)
		}
		if m.Platform != nil && m.Platform.OS != "unknown" {
			have = append(have, m.Platform.String())
		}
		if found == nil && (isManifest(m.MediaType) || isIndex(m.MediaType)) && p.matches(m.Platform) {
			found = &m
		}
	}
	sort.Strings(have)
	return found, have, nil
}

// parseManifest decodes an image manifest and returns its config.
func parseManifest(data []byte) (descriptor, error) {
	var m struct {
		SchemaVersion int          `json:"schemaVersion"`
		Config        descriptor   `json:"config"`
		Layers        []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return descriptor{}, fmt.Errorf("invalid manifest JSON (%v)", err)
	}
	if m.SchemaVersion != 2 {
		return descriptor{}, fmt.Errorf("manifest schemaVersion %d, want 2", m.SchemaVersion)
	}
	if err := m.Config.check(); err != nil {
		return descriptor{}, fmt.Errorf("manifest config: %v", err)
	}
	return m.Config, nil
}

// imageConfig is the part of an image config dockroot reads.
type imageConfig struct {
	Created time.Time
	Platform
	DiffIDs []string
}

// parseConfig decodes an image config: its platform, creation time and
// rootfs.diff_ids.
func parseConfig(data []byte) (imageConfig, error) {
	var c struct {
		Created *time.Time `json:"created"`
		Platform
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return imageConfig{}, fmt.Errorf("invalid config JSON (%v)", err)
	}
	for i, d := range c.RootFS.DiffIDs {
		if err := snapshot.CheckDigest(d); err != nil {
			return imageConfig{}, fmt.Errorf("rootfs.diff_ids[%d]: %v", i, err)
		}
	}
	out := imageConfig{Platform: c.Platform, DiffIDs: c.RootFS.DiffIDs}
	if c.Created != nil {
		out.Created = *c.Created
	}
	return out, nil
}
