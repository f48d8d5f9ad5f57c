package graphdriver_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
	"github.com/dockroot/dockroot/snapshot/stores"
	"github.com/dockroot/dockroot/snapshot/storetest"
)

const dockerPath = "var/lib/docker"

// TestGraphDriverStoreRoot proves the graph-driver store against what a real
// dockerd 20.10 writes: a loop btrfs, a private daemon with the btrfs
// storage driver on it, and fixture images built there.
func TestGraphDriverStoreRoot(t *testing.T) {
	testenv.RequireRoot(t, "dockerd", "docker")
	b := testenv.NewBtrfs(t, 1024, "dockroot-store")
	d := testenv.StartDockerd(t, filepath.Join(b.Mnt, dockerPath))
	fx := d.BuildFixtures(t)
	store, err := stores.Open("auto", b.Mnt, dockerPath)
	if err != nil || store.Name() != layout.StoreGraphDriver {
		t.Fatalf("stores.Open(auto) = %v, %v; want the graph-driver store", store, err)
	}

	t.Run("Suite", func(t *testing.T) {
		storetest.Run(t, store, suiteFixtures(t, b.Mnt, d, fx))
	})
	t.Run("NotFoundListsExactlyTheStoreTags", func(t *testing.T) {
		_, err := store.Resolve("desk:3")
		var nf *snapshot.NotFoundError
		if !errors.As(err, &nf) {
			t.Fatalf("Resolve(desk:3) = %v, want *NotFoundError", err)
		}
		// docker images shows tags; the store also lists the digest
		// reference, which is just as valid for docker_image=.
		digested, _ := snapshot.ParseRef(fx.Digested)
		want := append(append([]string{}, fx.Tags...), digested.Familiar())
		sort.Strings(want)
		if strings.Join(nf.Available, "\n") != strings.Join(want, "\n") {
			t.Errorf("Available = %q, want %q", nf.Available, want)
		}
		t.Logf("message: %v", err)
	})
	t.Run("RepositoriesJSONShape", func(t *testing.T) {
		// dockerd 20.10 (reference/store.go) keys repositories.json by
		// familiar name, then by familiar reference; Resolve relies on
		// parsing these keys back.
		data, err := os.ReadFile(filepath.Join(b.Mnt, dockerPath, "image/btrfs/repositories.json"))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("repositories.json: %s", data)
		var doc struct{ Repositories map[string]map[string]string }
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		n := 0
		for repo, refs := range doc.Repositories {
			for key := range refs {
				n++
				r, err := snapshot.ParseRef(key)
				if err != nil || r.FamiliarName() != repo || r.Familiar() != key {
					t.Errorf("repositories.json key %q / %q: ParseRef = %+v, %v; want the familiar name and reference", repo, key, r, err)
				}
			}
		}
		if want := len(fx.Tags) + 1; n != want {
			t.Errorf("repositories.json has %d references, want %d (tags %v and %s)", n, want, fx.Tags, fx.Digested)
		}
	})
	t.Run("CorruptCopies", func(t *testing.T) { testCorruptCopies(t, b.Mnt, fx) })
	t.Run("Overlay2Store", func(t *testing.T) { testOverlay2(t, b.Mnt) })
}

// suiteFixtures lists every reference form for the fixture images.
func suiteFixtures(t *testing.T, top string, d *testenv.Dockerd, fx testenv.Fixtures) storetest.Fixtures {
	desk1, desk2 := fx.IDs[fx.Desk1], fx.IDs[fx.Desk2]
	hex1 := strings.TrimPrefix(desk1, "sha256:")
	images := map[string]string{
		fx.Base:                          fx.IDs[fx.Base],
		"docker.io/" + fx.Base:           fx.IDs[fx.Base],
		fx.Desk1:                         desk1,
		"docker.io/library/desk:1":       desk1,
		"index.docker.io/library/desk:1": desk1,
		"docker.io/desk:1":               desk1,
		"library/desk:1":                 desk1,
		fx.Registry:                      desk1,
		fx.Desk2:                         desk2,
		fx.Latest:                        desk2,
		"desk:latest":                    desk2,
		"docker.io/library/desk":         desk2,
		fx.Digested:                      desk2,
		desk1:                            desk1, // sha256:<64 hex>
		hex1:                             desk1, // bare 64 hex
		hex1[:snapshot.MinIDPrefix]:      desk1,
		"sha256:" + hex1[:20]:            desk1,
		strings.TrimPrefix(desk2, "sha256:")[:16]: desk2,
	}
	return storetest.Fixtures{
		Top:        top,
		Images:     images,
		Tags:       fx.Tags,
		NoLayers:   fx.Zero,
		Missing:    "desk:3",
		ExportAdds: storetest.DockerExportAdds,
		Export: func(t testing.TB, ref string) []byte {
			id := d.Docker(t, "create", ref)
			defer d.Docker(t, "rm", id)
			var out bytes.Buffer
			cmd := d.Command("export", id)
			cmd.Stdout = &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("docker export %s: %v", id, err)
			}
			return out.Bytes()
		},
	}
}

// testCorruptCopies copies the real store's metadata (image/btrfs, a few
// hundred KB; the layer subvolumes are shared through a symlink), damages
// one thing per case and checks the error names the damaged file. The
// fixture store itself is never touched.
func testCorruptCopies(t *testing.T, top string, fx testenv.Fixtures) {
	desk1 := fx.IDs[fx.Desk1]
	real := graphdriver.New(top, dockerPath)
	img, err := real.Resolve(fx.Desk1)
	if err != nil {
		t.Fatal(err)
	}
	configFile := "image/btrfs/imagedb/content/sha256/" + strings.TrimPrefix(desk1, "sha256:")
	cacheFile := "image/btrfs/layerdb/sha256/" + strings.TrimPrefix(img.ChainID, "sha256:") + "/cache-id"
	const repos = "image/btrfs/repositories.json"

	tests := []struct {
		name    string
		damage  func(root string) error
		ref     string
		is      error
		mention []string
	}{
		{"config modified", func(root string) error { return appendTo(filepath.Join(root, configFile), " ") },
			fx.Desk1, snapshot.ErrCorrupt, []string{configFile, "pull or build it again", "hashes to"}},
		{"config missing", func(root string) error { return os.Remove(filepath.Join(root, configFile)) },
			fx.Desk1, snapshot.ErrCorrupt, []string{configFile, "repositories.json"}},
		{"config missing, by ID", func(root string) error { return os.Remove(filepath.Join(root, configFile)) },
			desk1, snapshot.ErrNotFound, []string{fx.Desk2}},
		{"repositories.json truncated", func(root string) error { return truncateHalf(filepath.Join(root, repos)) },
			fx.Desk1, snapshot.ErrCorrupt, []string{repos, "invalid JSON"}},
		{"repositories.json missing", func(root string) error { return os.Remove(filepath.Join(root, repos)) },
			fx.Desk1, snapshot.ErrNotFound, []string{repos, "does not exist"}},
		{"cache-id missing", func(root string) error { return os.Remove(filepath.Join(root, cacheFile)) },
			fx.Desk1, snapshot.ErrCorrupt, []string{cacheFile, img.ChainID}},
		{"subvolume missing", func(root string) error {
			return os.WriteFile(filepath.Join(root, cacheFile), []byte(strings.Repeat("f", 64)), 0o644)
		}, fx.Desk1, snapshot.ErrCorrupt, []string{"btrfs/subvolumes/" + strings.Repeat("f", 64), cacheFile}},
		{"cache-id escapes", func(root string) error {
			return os.WriteFile(filepath.Join(root, cacheFile), []byte("../../etc"), 0o644)
		}, fx.Desk1, snapshot.ErrCorrupt, []string{cacheFile, "not a subvolume name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			copyTop := t.TempDir()
			root := filepath.Join(copyTop, dockerPath)
			testenv.Run(t, "mkdir", "-p", root)
			testenv.Run(t, "cp", "-a", filepath.Join(top, dockerPath, "image"), root)
			// The store checks only that the layer's directory is there, and
			// follows no symlink to it (so the copy cannot link to the real one).
			if err := os.MkdirAll(filepath.Join(root, filepath.Dir(img.Subvolume[len(dockerPath)+1:]), filepath.Base(img.Subvolume)), 0o755); err != nil {
				t.Fatal(err)
			}
			// The undamaged copy resolves like the real store.
			s := graphdriver.New(copyTop, dockerPath)
			if got, err := s.Resolve(tt.ref); err != nil || got.Subvolume != img.Subvolume {
				t.Fatalf("undamaged copy: Resolve(%q) = %+v, %v", tt.ref, got, err)
			}
			if err := tt.damage(root); err != nil {
				t.Fatal(err)
			}
			got, err := s.Resolve(tt.ref)
			if !errors.Is(err, tt.is) {
				t.Fatalf("Resolve(%q) = %+v, %v; want %v", tt.ref, got, err, tt.is)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			t.Logf("message: %v", err)
		})
	}
}

func appendTo(p, s string) error {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func truncateHalf(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	return os.Truncate(p, fi.Size()/2)
}

// testOverlay2 runs a second private dockerd with the overlay2 driver and
// checks that both stores.Open("auto") and Resolve explain the fix.
func testOverlay2(t *testing.T, top string) {
	const overlayPath = "overlay-docker"
	d := testenv.StartDockerdDriver(t, filepath.Join(top, overlayPath), "overlay2")
	d.Docker(t, "tag", mustImportTiny(t, d), "desk:1")

	want := []string{"overlay2", `{"storage-driver": "btrfs"}`, "daemon.json", filepath.Join(top, overlayPath)}
	_, err := stores.Open("auto", top, overlayPath)
	if !errors.Is(err, snapshot.ErrUnsupportedStore) {
		t.Fatalf("stores.Open(auto) on an overlay2 store = %v, want ErrUnsupportedStore", err)
	}
	_, rerr := graphdriver.New(top, overlayPath).Resolve("desk:1")
	for _, e := range []error{err, rerr} {
		for _, w := range want {
			if e == nil || !strings.Contains(e.Error(), w) {
				t.Errorf("error %v does not mention %q", e, w)
			}
		}
	}
	t.Logf("message: %v", err)

	// A daemon killed outright leaves its bind mounts of the data root
	// behind; Stop must release them or the loop btrfs stays busy.
	if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("Stop after SIGKILL: %v", err)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mountinfo), " "+d.Root) || strings.Contains(string(mountinfo), " "+d.ExecRoot) {
		t.Errorf("mounts left below %s or %s after Stop:\n%s", d.Root, d.ExecRoot, mountinfo)
	}
}

// mustImportTiny imports a one-file image and returns its ID.
func mustImportTiny(t *testing.T, d *testenv.Dockerd) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := testenv.Run(t, "tar", "-C", dir, "-c", ".")
	out, err := d.Run(strings.NewReader(tarball), "import", "-")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}
