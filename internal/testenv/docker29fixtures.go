package testenv

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// Docker29Fixtures are the images MakeDocker29Fixtures makes in a Docker
// 29 with the containerd image store. No container is ever started (Docker
// 29 asks runc for a time namespace that Debian's runc 1.1.5 lacks): the
// base is a docker import, the layered images a docker load of an OCI
// archive written here, and docker create (never start) after each so that
// the image is unpacked with the btrfs snapshotter, as a user's docker pull
// or docker run leaves it.
type Docker29Fixtures struct {
	Base     string // "dockroot-test/base:1": docker import of a busybox-static rootfs
	Desk1    string // "desk:1": Base's layer plus one layer (files, a symlink, a hard link, a whiteout, setuid)
	Desk2    string // "desk:2": Desk1's layers plus one more (an opaque-free directory whiteout, changed files)
	Latest   string // "desk": desk:latest, another name for Desk2
	Registry string // "registry.example:5000/team/desk:1": another name for Desk1
	// Packed is "packed:1": an image for another architecture (s390x),
	// which docker load stores but does not unpack (Docker 29 unpacks
	// only the host's platform), as after docker pull --platform.
	Packed string
	// Digested is "desk@sha256:<Desk2's target digest>", what docker images
	// --digests shows.
	Digested string
	// Pulled is Desk2 pulled by digest from an in-process registry (as
	// the classic fixtures do), "127.0.0.1:<port>/fixture/desk@sha256:…":
	// a digest reference as the store records it. Its ID is the digest of
	// the registry's manifest, not Desk2's; its layers are Desk2's.
	Pulled  string
	IDs     map[string]string // each reference above -> Docker's image ID
	Tags    []string          // every tag docker images lists, familiar form, sorted
	Timings map[string]time.Duration
}

// MakeDocker29Fixtures makes the fixture images in d (a Docker 29 with the
// containerd image store), using workDir for the base rootfs.
func (d *Dockerd) MakeDocker29Fixtures(workDir string) (Docker29Fixtures, error) {
	f := Docker29Fixtures{
		Base: "dockroot-test/base:1", Desk1: "desk:1", Desk2: "desk:2", Latest: "desk",
		Registry: "registry.example:5000/team/desk:1", Packed: "packed:1",
		IDs: map[string]string{}, Timings: map[string]time.Duration{},
	}
	unpack := func(ref string) error {
		id, err := d.Run(nil, "create", "--network", "none", ref)
		if err != nil {
			return err
		}
		_, err = d.Run(nil, "rm", strings.TrimSpace(id))
		return err
	}
	var base []byte
	steps := []struct {
		name string
		run  func() error
	}{
		{"import base", func() error {
			buf, err := baseTar(filepath.Join(workDir, "rootfs"))
			if err != nil {
				return err
			}
			base = buf.Bytes()
			if _, err := d.Run(bytes.NewReader(base), "import", "--change", `CMD ["/sbin/init"]`, "-", f.Base); err != nil {
				return err
			}
			return unpack(f.Base)
		}},
		{"load desk:1 and desk:2", func() error {
			l1, err := layerTar([]tarEntry{
				dir("opt/"), dir("opt/desk/"), dir("opt/desk/sub/"), dir("usr/"), dir("usr/bin/"),
				file("opt/desk/one", 0o644, "one\n"),
				{h: tar.Header{Name: "opt/desk/link", Typeflag: tar.TypeSymlink, Linkname: "one", Mode: 0o777}},
				{h: tar.Header{Name: "opt/desk/hard", Typeflag: tar.TypeLink, Linkname: "opt/desk/one", Mode: 0o644}},
				file("bin/.wh.touch", 0o644, ""), // deletes the base's /bin/touch
				file("etc/fixture-image", 0o644, f.Desk1+"\n"),
				file("opt/desk/sub/x", 0o4755, "x\n"),
				file("usr/bin/suid", 0o4755, "#!/bin/sh\nid\n"),
			})
			if err != nil {
				return err
			}
			l2, err := layerTar([]tarEntry{
				file("opt/desk/.wh.sub", 0o644, ""), // deletes desk:1's directory
				file("etc/fixture-image", 0o644, f.Desk2+"\n"),
				file("opt/desk/second", 0o644, "second\n"),
			})
			if err != nil {
				return err
			}
			archive, err := ociArchive([]ociImage{
				{name: f.Desk1, layers: [][]byte{base, l1}},
				{name: f.Desk2, layers: [][]byte{base, l1, l2}},
			})
			if err != nil {
				return err
			}
			if _, err := d.Run(bytes.NewReader(archive), "load"); err != nil {
				return err
			}
			if err := unpack(f.Desk1); err != nil {
				return err
			}
			return unpack(f.Desk2)
		}},
		{"tag other names", func() error {
			for _, tt := range [][2]string{{f.Desk1, f.Registry}, {f.Desk2, f.Latest}} {
				if _, err := d.Run(nil, "tag", tt[0], tt[1]); err != nil {
					return err
				}
			}
			return nil
		}},
		{"pull desk:2 by digest", func() (err error) { f.Pulled, err = d.pullByDigest(f.Desk2, "fixture/desk"); return err }},
		{"load packed", func() error {
			// Content of its own, so that no snapshot of another image
			// could serve it, and another architecture, so that docker
			// load leaves it packed. Its target is a single manifest, not
			// an index, so no platform is picked on reading it.
			l, err := layerTar([]tarEntry{dir("packed/"), file("packed/only", 0o644, "never unpacked\n")})
			if err != nil {
				return err
			}
			archive, err := ociArchive([]ociImage{{name: f.Packed, arch: "s390x", layers: [][]byte{l}}})
			if err != nil {
				return err
			}
			_, err = d.Run(bytes.NewReader(archive), "load")
			return err
		}},
	}
	for _, s := range steps {
		start := time.Now()
		if err := s.run(); err != nil {
			return f, fmt.Errorf("docker 29 fixtures: %s: %w", s.name, err)
		}
		f.Timings[s.name] = time.Since(start).Round(time.Millisecond)
	}
	for _, ref := range []string{f.Base, f.Desk1, f.Desk2, f.Latest, f.Registry, f.Pulled, f.Packed} {
		id, err := d.Run(nil, "image", "inspect", "--format", "{{.Id}}", ref)
		if err != nil {
			return f, fmt.Errorf("docker 29 fixtures: %w", err)
		}
		f.IDs[ref] = strings.TrimSpace(id)
	}
	f.Digested = "desk@" + f.IDs[f.Desk2]
	f.IDs[f.Digested] = f.IDs[f.Desk2]
	out, err := d.Run(nil, "images", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		return f, fmt.Errorf("docker 29 fixtures: %w", err)
	}
	for _, line := range strings.Fields(out) {
		if !strings.Contains(line, "<none>") {
			f.Tags = append(f.Tags, line)
		}
	}
	sort.Strings(f.Tags)
	return f, nil
}

// BuildDocker29Fixtures is MakeDocker29Fixtures, failing t on error.
func (d *Dockerd) BuildDocker29Fixtures(t testing.TB) Docker29Fixtures {
	t.Helper()
	start := time.Now()
	f, err := d.MakeDocker29Fixtures(t.TempDir())
	if err != nil {
		t.Fatalf("%v\n%s", err, d.LogTail(30))
	}
	t.Logf("docker 29 fixtures built in %v: %v", time.Since(start).Round(time.Millisecond), f.Timings)
	return f
}

// tarEntry is one member of a layer tar: its header and, for a regular
// file, its content.
type tarEntry struct {
	h    tar.Header
	data string
}

func dir(name string) tarEntry {
	return tarEntry{h: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}

func file(name string, mode int64, data string) tarEntry {
	return tarEntry{h: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data))}, data: data}
}

// layerTar writes entries as an uncompressed layer tar owned by root, with
// a fixed modification time so that the same entries give the same diff ID.
func layerTar(entries []tarEntry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range entries {
		h := e.h
		h.Uname, h.Gname, h.ModTime, h.Format = "root", "root", mtime, tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("layer tar %s: %w", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			return nil, fmt.Errorf("layer tar %s: %w", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ociImage is one image of an OCI archive: its reference (familiar form)
// and its uncompressed layer tars, lowest first; arch is its config's
// architecture, the host's when empty.
type ociImage struct {
	name   string
	arch   string
	layers [][]byte
}

type ociDesc struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ociArchive writes images as an OCI image layout in a tar stream, what
// docker load takes (and docker save of Docker 29 writes): oci-layout,
// index.json naming each manifest, blobs/sha256, and the Docker-style
// manifest.json with RepoTags. Layers are stored uncompressed; the config
// runs /sbin/init.
func ociArchive(images []ociImage) ([]byte, error) {
	blobs := map[string][]byte{}
	add := func(media string, data []byte) ociDesc {
		sum := sha256.Sum256(data)
		dg := "sha256:" + hex.EncodeToString(sum[:])
		blobs[dg] = data
		return ociDesc{MediaType: media, Digest: dg, Size: len(data)}
	}
	type dockerManifest struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var index []ociDesc
	var dockerManifests []dockerManifest
	created := time.Now().UTC().Truncate(time.Second)
	for _, img := range images {
		var diffIDs []string
		var layers []ociDesc
		var history []map[string]string
		dm := dockerManifest{RepoTags: []string{img.name}}
		for i, l := range img.layers {
			desc := add("application/vnd.oci.image.layer.v1.tar", l)
			layers = append(layers, desc)
			diffIDs = append(diffIDs, desc.Digest)
			history = append(history, map[string]string{"created": created.Format(time.RFC3339), "created_by": fmt.Sprintf("dockroot testenv layer %d", i)})
			dm.Layers = append(dm.Layers, "blobs/sha256/"+strings.TrimPrefix(desc.Digest, "sha256:"))
		}
		arch := img.arch
		if arch == "" {
			arch = runtime.GOARCH
		}
		config, err := json.Marshal(map[string]any{
			"created":      created.Format(time.RFC3339),
			"architecture": arch,
			"os":           "linux",
			"config":       map[string]any{"Cmd": []string{"/sbin/init"}, "Labels": map[string]string{"dockroot.fixture": img.name}},
			"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
			"history":      history,
		})
		if err != nil {
			return nil, err
		}
		cdesc := add("application/vnd.oci.image.config.v1+json", config)
		dm.Config = "blobs/sha256/" + strings.TrimPrefix(cdesc.Digest, "sha256:")
		manifest, err := json.Marshal(map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.manifest.v1+json",
			"config":        cdesc,
			"layers":        layers,
		})
		if err != nil {
			return nil, err
		}
		mdesc := add("application/vnd.oci.image.manifest.v1+json", manifest)
		name, tag, _ := strings.Cut(img.name, ":")
		if !strings.Contains(name, "/") {
			name = "library/" + name
		}
		mdesc.Annotations = map[string]string{
			"io.containerd.image.name":          "docker.io/" + name + ":" + tag,
			"org.opencontainers.image.ref.name": tag,
		}
		index = append(index, mdesc)
		dockerManifests = append(dockerManifests, dm)
	}
	indexJSON, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     index,
	})
	if err != nil {
		return nil, err
	}
	manifestJSON, err := json.Marshal(dockerManifests)
	if err != nil {
		return nil, err
	}
	entries := []tarEntry{
		file("oci-layout", 0o644, `{"imageLayoutVersion":"1.0.0"}`),
		file("index.json", 0o644, string(indexJSON)),
		file("manifest.json", 0o644, string(manifestJSON)),
		dir("blobs/"), dir("blobs/sha256/"),
	}
	digests := make([]string, 0, len(blobs))
	for dg := range blobs {
		digests = append(digests, dg)
	}
	sort.Strings(digests)
	for _, dg := range digests {
		entries = append(entries, file("blobs/sha256/"+strings.TrimPrefix(dg, "sha256:"), 0o644, string(blobs[dg])))
	}
	return layerTar(entries)
}
