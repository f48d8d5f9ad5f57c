package stores

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
)

func TestOpenKinds(t *testing.T) {
	top := t.TempDir()
	var uk *UnknownKindError
	if _, err := Open("overlay", top, "var/lib/docker"); !errors.As(err, &uk) || uk.Kind != "overlay" {
		t.Errorf("Open(overlay) = %v, want an *UnknownKindError for overlay", err)
	}
	if _, err := Open(layout.StoreAuto, top, "var/lib/docker"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(auto) on a missing data root = %v, want fs.ErrNotExist", err)
	}
	for _, kind := range []string{layout.StoreGraphDriver, layout.StorePodman} {
		s, err := OpenPaths(kind, top, Paths{})
		if err != nil || s.Name() != kind {
			t.Errorf("OpenPaths(%s) = %v, %v", kind, s, err)
		}
	}
}

const (
	dockerPath = "var/lib/docker"
	podmanPath = "var/lib/containers/storage"
)

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// dockerStore writes a minimal btrfs graph-driver store holding the given
// familiar tags, all for one image, and returns its ID.
func dockerStore(t *testing.T, top string, tags ...string) string {
	diff := "sha256:" + strings.Repeat("d", 64)
	cfg := `{"created":"2026-01-02T03:04:05Z","rootfs":{"type":"layers","diff_ids":["` + diff + `"]}}`
	id := "sha256:" + digestOf(cfg)
	root := filepath.Join(top, dockerPath)
	var refs []string
	for _, tag := range tags {
		refs = append(refs, `"`+tag+`":"`+id+`"`)
	}
	write(t, filepath.Join(root, "image/btrfs/imagedb/content/sha256", strings.TrimPrefix(id, "sha256:")), cfg)
	write(t, filepath.Join(root, "image/btrfs/repositories.json"), `{"Repositories":{"any":{`+strings.Join(refs, ",")+`}}}`)
	write(t, filepath.Join(root, "image/btrfs/layerdb/sha256", strings.TrimPrefix(diff, "sha256:"), "cache-id"), "dockerlayer")
	write(t, filepath.Join(root, "btrfs/subvolumes/dockerlayer/x"), "")
	return id
}

// podmanStore writes a minimal btrfs containers/storage store with one
// image under the given names, and returns its ID.
func podmanStore(t *testing.T, top string, names ...string) string {
	layer := strings.Repeat("1", 64)
	cfg := `{"created":"2026-01-02T03:04:05Z","rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("e", 64) + `"]}}`
	id := digestOf(cfg)
	root := filepath.Join(top, podmanPath)
	write(t, filepath.Join(root, "btrfs-images/images.json"), `[{"id":"`+id+`","names":["`+strings.Join(names, `","`)+`"],"layer":"`+layer+
		`","big-data-names":["sha256:`+id+`"],"created":"2026-01-02T03:04:05Z"}]`)
	write(t, filepath.Join(root, "btrfs-images", id, "="+base64.StdEncoding.EncodeToString([]byte("sha256:"+id))), cfg)
	write(t, filepath.Join(root, "btrfs-layers/layers.json"), `[{"id":"`+layer+`"}]`)
	write(t, filepath.Join(root, "btrfs/subvolumes", layer, "x"), "")
	return "sha256:" + id
}

// TestAuto is dockroot.store=auto over hand-written stores: each store
// alone, both, neither.
func TestAuto(t *testing.T) {
	t.Run("DockerOnly", func(t *testing.T) {
		top := t.TempDir()
		id := dockerStore(t, top, "desk:1")
		s, err := Open(layout.StoreAuto, top, dockerPath)
		if err != nil || s.Name() != layout.StoreGraphDriver {
			t.Fatalf("Open(auto) = %v, %v; want the graph-driver store", s, err)
		}
		if img, err := s.Resolve("desk:1"); err != nil || img.ID != id {
			t.Errorf("Resolve = %+v, %v", img, err)
		}
	})
	t.Run("OpenIsDockerOnly", func(t *testing.T) {
		top := t.TempDir()
		podmanStore(t, top, "localhost/desk:1")
		var dr *snapshot.DataRootError
		if _, err := Open(layout.StoreAuto, top, dockerPath); !errors.As(err, &dr) || dr.Kind != "" {
			t.Errorf("Open(auto) with only a Podman store = %v; want the Docker DataRootError (Open looks at Docker only)", err)
		}
	})
	t.Run("PodmanOnly", func(t *testing.T) {
		top := t.TempDir()
		id := podmanStore(t, top, "localhost/desk:1")
		s, err := OpenPaths(layout.StoreAuto, top, Paths{})
		if err != nil || s.Name() != layout.StorePodman {
			t.Fatalf("OpenPaths(auto) = %v, %v; want the Podman store", s, err)
		}
		if img, err := s.Resolve("desk:1"); err != nil || img.ID != id || !strings.HasPrefix(img.Subvolume, podmanPath+"/btrfs/subvolumes/") {
			t.Errorf("Resolve = %+v, %v", img, err)
		}
	})
	t.Run("Both", func(t *testing.T) {
		top := t.TempDir()
		did := dockerStore(t, top, "desk:1", "docker-only:1")
		pid := podmanStore(t, top, "localhost/desk:1", "localhost/podman-only:1")
		s, err := OpenPaths(layout.StoreAuto, top, Paths{Docker: dockerPath, Podman: podmanPath})
		if err != nil {
			t.Fatal(err)
		}
		if img, err := s.Resolve("docker-only:1"); err != nil || img.ID != did {
			t.Errorf("Resolve(docker-only:1) = %+v, %v", img, err)
		}
		if img, err := s.Resolve("podman-only:1"); err != nil || img.ID != pid {
			t.Errorf("Resolve(podman-only:1) = %+v, %v", img, err)
		}
		_, err = s.Resolve("desk:1")
		var amb *AmbiguousError
		if !errors.As(err, &amb) || strings.Join(amb.Stores, ",") != "graphdriver,podman" || amb.Ref != "desk:1" ||
			amb.Images[0].ID != did || amb.Images[1].ID != pid {
			t.Fatalf("Resolve(desk:1) = %v, want an *AmbiguousError naming graphdriver and podman", err)
		}
		t.Logf("message: %v", err)
		_, err = s.Resolve("desk:3")
		var nf *snapshot.NotFoundError
		if !errors.As(err, &nf) {
			t.Fatalf("Resolve(desk:3) = %v, want *NotFoundError", err)
		}
		want := "desk:1,docker-only:1,localhost/desk:1,localhost/podman-only:1"
		if strings.Join(nf.Available, ",") != want || !strings.Contains(nf.Store, filepath.Join(top, dockerPath)) || !strings.Contains(nf.Store, filepath.Join(top, podmanPath)) {
			t.Errorf("NotFoundError %+v: want tags %s and both stores named", nf, want)
		}
		list, err := s.List()
		if err != nil || len(list) != 4 {
			t.Errorf("List = %v, %v; want 4 entries", list, err)
		}
		// A store that cannot answer is never guessed past.
		write(t, filepath.Join(top, podmanPath, "btrfs-images/images.json"), "[")
		if _, err := s.Resolve("docker-only:1"); !errors.Is(err, snapshot.ErrCorrupt) {
			t.Errorf("Resolve with a corrupt Podman store = %v, want ErrCorrupt", err)
		}
	})
	t.Run("Neither", func(t *testing.T) {
		top := t.TempDir()
		_, err := OpenPaths(layout.StoreAuto, top, Paths{})
		var dr *snapshot.DataRootError
		if !errors.As(err, &dr) || !dr.Missing || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("OpenPaths(auto) = %v, want missing DataRootErrors", err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error %q is not one line", err)
		}
		for _, w := range []string{"Docker data root " + filepath.Join(top, dockerPath), "Podman graph root " + filepath.Join(top, podmanPath)} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not name %q", err, w)
			}
		}
	})
	t.Run("PodmanOverlayDockerMissing", func(t *testing.T) {
		top := t.TempDir()
		write(t, filepath.Join(top, podmanPath, "overlay-images/images.json"), "[]")
		_, err := OpenPaths(layout.StoreAuto, top, Paths{})
		var dr *snapshot.DataRootError
		if !errors.As(err, &dr) || dr.Missing || dr.Kind != layout.StorePodman || !errors.Is(err, snapshot.ErrUnsupportedStore) {
			t.Fatalf("OpenPaths(auto) = %v; want the Podman overlay DataRootError first", err)
		}
	})
}
