package containerd

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dockroot/dockroot/snapshot"
)

// FuzzParseBlobs feeds the index, manifest and config parsers anything:
// they must not panic, and what they accept must be usable (digests
// checked, sizes in range).
func FuzzParseBlobs(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2,"platform":{"os":"linux","architecture":"amd64"}}]}`))
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":-1}}`))
	f.Add([]byte(`{"created":"2026-01-02T03:04:05Z","os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["sha256:x"]}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, _, err := parseIndex(data, amd64); err == nil && m != nil {
			if m.check() != nil || !amd64.matches(m.Platform) {
				t.Errorf("parseIndex picked %+v", m)
			}
		}
		if c, err := parseManifest(data); err == nil && c.check() != nil {
			t.Errorf("parseManifest accepted config %+v", c)
		}
		if c, err := parseConfig(data); err == nil {
			for _, d := range c.DiffIDs {
				if snapshot.CheckDigest(d) != nil {
					t.Errorf("parseConfig accepted diff ID %q", d)
				}
			}
		}
	})
}

// FuzzParseValues feeds the decoders of bbolt values anything.
func FuzzParseValues(f *testing.F) {
	f.Add("docker.io/library/desk:1", []byte("sha256:0000000000000000000000000000000000000000000000000000000000000000"), []byte(mediaOCIIndex), []byte{0x80, 0x01}, []byte{1}, []byte{3})
	f.Add("moby-dangling@sha256:00", []byte("sha256:"), []byte(""), []byte{0xff}, []byte{}, []byte{3, 3})
	f.Fuzz(func(t *testing.T, name string, dgst, mt, size, id, kind []byte) {
		if im, err := parseImageValues(name, dgst, mt, size, nil); err == nil {
			if snapshot.CheckDigest(im.target.Digest) != nil || im.target.Size < 0 {
				t.Errorf("parseImageValues accepted %+v", im)
			}
			if im.named && im.ref.String() != name {
				t.Errorf("name %q parsed as %s", name, im.ref)
			}
		}
		parseSnapshotValues(id, kind)
		decodeTime(dgst)
	})
}

// TestMutatedDatabases opens 300 randomly damaged copies of a real-layout
// meta.db (a few bytes changed each, fixed seed): bbolt's panics and
// faults on a damaged file must come back as errors, and no read may hang.
// It is a test, not a fuzz target: opening a bbolt file per input is too
// slow for the fuzz pass CI runs (50,000 inputs a target).
func TestMutatedDatabases(t *testing.T) {
	fx := newFixture(t)
	fx.close()
	seed, err := os.ReadFile(filepath.Join(fx.root, metaDB))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, filepath.Dir(metaDB)), 0o755)
	os.MkdirAll(filepath.Join(root, snapshotsRoot), 0o755)
	s := New(filepath.Dir(root), filepath.Base(root), Options{Platform: amd64})
	r := rand.New(rand.NewSource(1))
	n := 300
	if testing.Short() {
		n = 50
	}
	for i := 0; i < n; i++ {
		data := append([]byte(nil), seed...)
		for j := 0; j < 1+r.Intn(8); j++ {
			data[r.Intn(len(data))] = byte(r.Intn(256))
		}
		if err := os.WriteFile(filepath.Join(root, metaDB), data, 0o644); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if img, err := s.Resolve("desk:1"); err == nil && img.Subvolume == "" {
				t.Errorf("mutation %d: Resolve gave an image without a subvolume: %+v", i, img)
			}
			s.List()
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("mutation %d: the read hangs", i)
		}
	}
}
