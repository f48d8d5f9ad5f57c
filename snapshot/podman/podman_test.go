package podman

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/snapshot"
	"time"

	"golang.org/x/sys/unix"
)

const gr = "var/lib/containers/storage"

var (
	layerA = strings.Repeat("a", 64) // bottom
	layerB = strings.Repeat("b", 64) // parent layerA, top of desk
	layerC = strings.Repeat("c", 64) // parent layerA, top of hub
)

// config returns an image config with n diff IDs and its ID.
func config(n int, seed string) (string, string) {
	var diffs []string
	for i := 0; i < n; i++ {
		diffs = append(diffs, `"sha256:`+strings.Repeat(seed, 64)+`"`)
	}
	cfg := `{"created":"2026-01-02T03:04:05Z","rootfs":{"type":"layers","diff_ids":[` + strings.Join(diffs, ",") + `]}}`
	sum := sha256.Sum256([]byte(cfg))
	return cfg, hex.EncodeToString(sum[:])
}

type fixture struct {
	top, root               string
	desk, hub, zero, digest string // image IDs (hex) and desk's manifest digest
	deskConfig, layersJSON  string // paths
	imagesJSON              string
}

// writeStore writes a containers/storage btrfs store as Podman 4.3.1 does:
// desk (localhost/desk:1, localhost/desk:latest) on layers a <- b; hub
// (docker.io/library/hub:1, registry.example:5000/team/base:1) on a <- c;
// zero (localhost/zero:1) without layers.
func writeStore(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{top: t.TempDir()}
	f.root = filepath.Join(f.top, gr)
	deskCfg, desk := config(2, "1")
	hubCfg, hub := config(2, "2")
	zeroCfg, zero := config(0, "3")
	f.desk, f.hub, f.zero = desk, hub, zero
	f.digest = "sha256:" + strings.Repeat("f", 64)
	img := func(id, layer, cfg string, names ...string) map[string]any {
		m := map[string]any{"id": id, "names": names, "created": "2026-01-02T03:04:05Z",
			"big-data-names": []string{"sha256:" + id, "manifest"}}
		if layer != "" {
			m["layer"] = layer
		}
		dir := filepath.Join(f.root, "btrfs-images", id)
		write(t, filepath.Join(dir, "="+base64.StdEncoding.EncodeToString([]byte("sha256:"+id))), cfg)
		return m
	}
	d := img(desk, layerB, deskCfg, "localhost/desk:1", "localhost/desk:latest")
	d["digest"] = f.digest
	images := []any{d,
		img(hub, layerC, hubCfg, "docker.io/library/hub:1", "registry.example:5000/team/base:1"),
		img(zero, "", zeroCfg, "localhost/zero:1"),
	}
	data, _ := json.Marshal(images)
	f.imagesJSON = filepath.Join(f.root, imagesFile)
	write(t, f.imagesJSON, string(data))
	f.layersJSON = filepath.Join(f.root, layersFile)
	write(t, f.layersJSON, `[{"id":"`+layerA+`"},{"id":"`+layerB+`","parent":"`+layerA+`"},{"id":"`+layerC+`","parent":"`+layerA+`"}]`)
	for _, l := range []string{layerA, layerB, layerC} {
		write(t, filepath.Join(f.root, subvolumeDir, l, "etc/os-release"), l)
	}
	f.deskConfig = filepath.Join(f.root, "btrfs-images", desk, "="+base64.StdEncoding.EncodeToString([]byte("sha256:"+desk)))
	return f
}

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestResolveRefForms: every reference form Podman accepts, and the ones
// it does not, on a hand-written store.
func TestResolveRefForms(t *testing.T) {
	f := writeStore(t)
	s := New(f.top, gr)
	tests := []struct {
		ref, id, matched string
		err              error
	}{
		{"desk:1", f.desk, "localhost/desk:1", nil},
		{"desk", f.desk, "localhost/desk:latest", nil},
		{"desk:latest", f.desk, "localhost/desk:latest", nil},
		{"localhost/desk:1", f.desk, "localhost/desk:1", nil},
		{"desk@" + f.digest, f.desk, "localhost/desk@" + f.digest, nil},
		{"localhost/desk@" + f.digest, f.desk, "localhost/desk@" + f.digest, nil},
		{"hub:1", f.hub, "docker.io/library/hub:1", nil},
		{"library/hub:1", f.hub, "docker.io/library/hub:1", nil},
		{"docker.io/library/hub:1", f.hub, "docker.io/library/hub:1", nil},
		{"registry.example:5000/team/base:1", f.hub, "registry.example:5000/team/base:1", nil},
		{"base:1", f.hub, "registry.example:5000/team/base:1", nil}, // repo-tag suffix
		{"team/base:1", f.hub, "registry.example:5000/team/base:1", nil},
		{"sha256:" + f.desk, f.desk, "sha256:" + f.desk, nil},
		{f.desk, f.desk, "sha256:" + f.desk, nil},
		{f.hub[:12], f.hub, "sha256:" + f.hub, nil},
		{"sha256:" + f.hub[:20], f.hub, "sha256:" + f.hub, nil},
		{"desk:2", "", "", snapshot.ErrNotFound},
		{"hub", "", "", snapshot.ErrNotFound},                      // hub:latest does not exist
		{"other/desk:1", "", "", snapshot.ErrNotFound},             // no suffix match across a component
		{"docker.io/library/desk:1", "", "", snapshot.ErrNotFound}, // qualified: no localhost/
		{"desk@sha256:" + strings.Repeat("e", 64), "", "", snapshot.ErrNotFound},
		{"hub@" + f.digest, "", "", snapshot.ErrNotFound}, // digest of another repository
		{f.desk[:11], "", "", snapshot.ErrNotFound},
		{"sha256:" + strings.Repeat("0", 64), "", "", snapshot.ErrNotFound},
		{"zero:1", "", "", snapshot.ErrNoLayers},
		{"Desk:1", "", "", nil},
		{"desk@sha256:abc", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			img, err := s.Resolve(tt.ref)
			switch {
			case tt.id != "":
				if err != nil || img.ID != "sha256:"+tt.id || img.Ref != tt.matched {
					t.Fatalf("Resolve = %+v, %v; want %s as %s", img, err, tt.id, tt.matched)
				}
				top := map[string]string{f.desk: layerB, f.hub: layerC}[tt.id]
				if img.Subvolume != gr+"/btrfs/subvolumes/"+top || img.ChainID != "sha256:"+top || len(img.DiffIDs) != 2 || img.Created.IsZero() {
					t.Errorf("Resolve = %+v", img)
				}
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("Resolve = %+v, %v; want %v", img, err, tt.err)
				}
			default:
				if err == nil || errors.Is(err, snapshot.ErrNotFound) {
					t.Fatalf("Resolve = %+v, %v; want a parse error", img, err)
				}
			}
		})
	}
	_, err := s.Resolve("desk:2")
	var nf *snapshot.NotFoundError
	want := "docker.io/library/hub:1,localhost/desk:1,localhost/desk:latest,localhost/zero:1,registry.example:5000/team/base:1"
	if !errors.As(err, &nf) || strings.Join(nf.Available, ",") != want || !strings.Contains(nf.Store, f.root) {
		t.Errorf("NotFoundError = %+v; want Available %s", nf, want)
	}
	list, err := s.List()
	if err != nil || len(list) != 5 || list[3].Ref != "localhost/zero:1" || list[3].Problem == "" || list[0].Problem != "" {
		t.Errorf("List = %+v, %v", list, err)
	}
}

// TestAmbiguous: an ID prefix or short name matching two images is refused.
func TestAmbiguous(t *testing.T) {
	f := writeStore(t)
	data, _ := os.ReadFile(f.imagesJSON)
	var recs []map[string]any
	if err := json.Unmarshal(data, &recs); err != nil {
		t.Fatal(err)
	}
	recs[2]["names"] = []string{"quay.io/other/base:1"}
	recs[2]["layer"] = layerA
	data, _ = json.Marshal(recs)
	write(t, f.imagesJSON, string(data))
	if _, err := New(f.top, gr).Resolve("base:1"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("Resolve(base:1) = %v, want ambiguous", err)
	}
}

// TestBrokenStores: each kind of damage, with the file it names.
func TestBrokenStores(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	tests := []struct {
		name    string
		damage  func(t *testing.T, f *fixture)
		is      error
		mention string
	}{
		{"ImagesJSONMissing", func(t *testing.T, f *fixture) { os.Remove(f.imagesJSON) }, snapshot.ErrNotFound, "does not exist"},
		{"ImagesJSONCorrupt", func(t *testing.T, f *fixture) { write(t, f.imagesJSON, `[{"id":`) }, snapshot.ErrCorrupt, "images.json"},
		{"ImagesJSONBadID", func(t *testing.T, f *fixture) { write(t, f.imagesJSON, `[{"id":"../x"}]`) }, snapshot.ErrCorrupt, "images.json"},
		{"LayersJSONCorrupt", func(t *testing.T, f *fixture) { write(t, f.layersJSON, `{}`) }, snapshot.ErrCorrupt, "layers.json"},
		{"LayersJSONMissing", func(t *testing.T, f *fixture) { os.Remove(f.layersJSON) }, snapshot.ErrCorrupt, "not in"},
		{"IncompleteLayer", func(t *testing.T, f *fixture) {
			write(t, f.layersJSON, `[{"id":"`+layerA+`","flags":{"incomplete":true}},{"id":"`+layerB+`","parent":"`+layerA+`"}]`)
		}, snapshot.ErrCorrupt, "incomplete"},
		{"MissingParent", func(t *testing.T, f *fixture) {
			write(t, f.layersJSON, `[{"id":"`+layerB+`","parent":"`+layerA+`"}]`)
		}, snapshot.ErrCorrupt, "parent " + layerA},
		{"ParentLoop", func(t *testing.T, f *fixture) {
			write(t, f.layersJSON, `[{"id":"`+layerA+`","parent":"`+layerB+`"},{"id":"`+layerB+`","parent":"`+layerA+`"}]`)
		}, snapshot.ErrCorrupt, "loop"},
		{"MissingSubvolume", func(t *testing.T, f *fixture) {
			os.RemoveAll(filepath.Join(f.root, subvolumeDir, layerB))
		}, snapshot.ErrCorrupt, "subvolumes/" + layerB},
		{"ConfigModified", func(t *testing.T, f *fixture) { write(t, f.deskConfig, `{}`) }, snapshot.ErrCorrupt, "hashes to"},
		{"ConfigMissing", func(t *testing.T, f *fixture) { os.Remove(f.deskConfig) }, snapshot.ErrCorrupt, "image config"},
		{"ImagesJSONFifo", func(t *testing.T, f *fixture) {
			os.Remove(f.imagesJSON)
			if err := unix.Mkfifo(f.imagesJSON, 0o600); err != nil {
				t.Fatal(err)
			}
		}, snapshot.ErrCorrupt, "not a regular file"},
		{"LayersJSONSymlink", func(t *testing.T, f *fixture) {
			data, _ := os.ReadFile(f.layersJSON)
			write(t, outside, string(data))
			os.Remove(f.layersJSON)
			if err := os.Symlink(outside, f.layersJSON); err != nil {
				t.Fatal(err)
			}
		}, snapshot.ErrCorrupt, "symbolic link"},
		{"SubvolumeSymlink", func(t *testing.T, f *fixture) {
			sub := filepath.Join(f.root, subvolumeDir, layerB)
			os.RemoveAll(sub)
			if err := os.Symlink(layerA, sub); err != nil {
				t.Fatal(err)
			}
		}, snapshot.ErrCorrupt, "symbolic link"},
		{"ConfigTooLarge", func(t *testing.T, f *fixture) { write(t, f.deskConfig, strings.Repeat(" ", maxConfigSize+1)) },
			snapshot.ErrCorrupt, "larger than"},
		{"OverlayStore", func(t *testing.T, f *fixture) {
			if err := os.RemoveAll(f.root); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(f.root, "overlay-images/images.json"), "[]")
		}, snapshot.ErrUnsupportedStore, `driver = "btrfs"`},
		{"NoStore", func(t *testing.T, f *fixture) { os.RemoveAll(f.root) }, fs.ErrNotExist, "Podman graph root"},
		{"NeverRun", func(t *testing.T, f *fixture) {
			os.RemoveAll(f.root)
			os.MkdirAll(f.root, 0o755)
		}, snapshot.ErrUnsupportedStore, "never stored"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeStore(t)
			tt.damage(t, f)
			done := make(chan error, 1)
			go func() { _, err := New(f.top, gr).Resolve("desk:1"); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-timeAfter():
				t.Fatal("Resolve blocked")
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("Resolve(desk:1) = %v; want %v mentioning %q", err, tt.is, tt.mention)
			}
			t.Logf("message: %v", err)
		})
	}
}

func timeAfter() <-chan time.Time { return time.After(5 * time.Second) }
