package podman_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/podman"
	"github.com/dockroot/dockroot/snapshot/stores"
	"github.com/dockroot/dockroot/snapshot/storetest"
)

const podmanPath = layout.DefaultPodmanPath

// TestPodmanStoreRoot proves the Podman store against what Debian's
// rootful podman 4.3.1 writes: a loop btrfs, podman confined to a graph
// root on it with the btrfs driver, and fixture images imported and built
// there; then the shared suite, as for every store.
func TestPodmanStoreRoot(t *testing.T) {
	testenv.RequireRoot(t, "podman")
	b := testenv.NewBtrfs(t, 1024, "dockroot-podman")
	p := testenv.NewPodman(t, filepath.Join(b.Mnt, podmanPath))
	fx := p.BuildFixtures(t)
	store, err := stores.OpenPaths(layout.StoreAuto, b.Mnt, stores.Paths{Podman: podmanPath})
	if err != nil || store.Name() != layout.StorePodman {
		t.Fatalf("stores.OpenPaths(auto) = %v, %v; want the Podman store", store, err)
	}
	sfx := suiteFixtures(b.Mnt, p, fx)
	t.Run("PodmanAgrees", func(t *testing.T) {
		// Every reference form the suite resolves, podman resolves to the
		// same image: dockroot follows Podman's lookup, not Docker's.
		for ref, want := range sfx.Images {
			if got := "sha256:" + p.Podman(t, "image", "inspect", "--format", "{{.Id}}", ref); got != want {
				t.Errorf("podman image inspect %s = %s, want %s", ref, got, want)
			}
		}
	})
	t.Run("Suite", func(t *testing.T) { storetest.Run(t, store, sfx) })
	t.Run("FileChain", func(t *testing.T) { testFileChain(t, b.Mnt, store, fx) })
	t.Run("OverlayStore", func(t *testing.T) { testOverlay(t, b.Mnt) })
}

// suiteFixtures lists every reference form Podman itself accepts for the
// fixture images (each checked with podman image inspect).
func suiteFixtures(top string, p *testenv.Podman, fx testenv.PodmanFixtures) storetest.Fixtures {
	desk1, desk2 := fx.IDs[fx.Desk1], fx.IDs[fx.Desk2]
	hex1 := strings.TrimPrefix(desk1, "sha256:")
	images := map[string]string{
		fx.Base:                fx.IDs[fx.Base],
		"localhost/" + fx.Base: fx.IDs[fx.Base],
		"base:1":               fx.IDs[fx.Base], // Podman's repo-tag suffix match
		fx.Desk1:               desk1,
		"localhost/desk:1":     desk1,
		fx.Registry:            desk1,
		fx.Hub:                 desk1,
		"hub:1":                desk1, // docker.io normalisation
		"library/hub:1":        desk1,
		fx.Desk2:               desk2,
		fx.Latest:              desk2,
		"desk:latest":          desk2,
		"localhost/desk":       desk2,
		fx.Digested:            desk2,
		strings.TrimPrefix(fx.Digested, "localhost/"): desk2,
		desk1:                       desk1,
		hex1:                        desk1,
		hex1[:snapshot.MinIDPrefix]: desk1,
		strings.TrimPrefix(desk2, "sha256:")[:16]: desk2,
	}
	return storetest.Fixtures{
		Top:        top,
		Images:     images,
		Tags:       fx.Tags,
		NoLayers:   "localhost/" + fx.Zero, // the tag as podman images shows it
		Missing:    "desk:3",
		ExportAdds: storetest.PodmanExportAdds,
		Export:     p.Export,
	}
}

// testFileChain checks each file of the chain on the real store: the
// subvolume is btrfs/subvolumes/<top layer> and the config blob is where
// the package comment says.
func testFileChain(t *testing.T, top string, store snapshot.Store, fx testenv.PodmanFixtures) {
	img, err := store.Resolve(fx.Desk2)
	if err != nil {
		t.Fatal(err)
	}
	layer := strings.TrimPrefix(img.ChainID, "sha256:")
	if want := podmanPath + "/btrfs/subvolumes/" + layer; img.Subvolume != want {
		t.Errorf("Subvolume = %s, want %s", img.Subvolume, want)
	}
	data, err := os.ReadFile(filepath.Join(top, img.Subvolume, "etc/fixture-image"))
	if err != nil || strings.TrimSpace(string(data)) != fx.Desk2 {
		t.Errorf("etc/fixture-image in the subvolume: %q, %v", data, err)
	}
	out := testenv.Run(t, "btrfs", "subvolume", "show", filepath.Join(top, img.Subvolume))
	if !strings.Contains(out, layer) {
		t.Errorf("btrfs subvolume show %s:\n%s", img.Subvolume, out)
	}
	if len(img.DiffIDs) < 6 {
		t.Errorf("DiffIDs = %v, want the base and one per build step", img.DiffIDs)
	}
	t.Logf("%s -> %s (%d layers), tags %v", fx.Desk2, img.Subvolume, len(img.DiffIDs), img.Tags)
}

// testOverlay sets up a second podman store with the overlay driver and
// checks that stores.OpenPaths(auto) and Resolve explain the fix.
func testOverlay(t *testing.T, top string) {
	const overlayPath = "overlay-podman"
	p := testenv.NewPodmanT(t, filepath.Join(top, overlayPath), "overlay")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := testenv.Run(t, "tar", "-C", dir, "-c", ".")
	if _, err := p.Run(strings.NewReader(tarball), "import", "-", "desk:1"); err != nil {
		t.Fatal(err)
	}
	_, err := stores.OpenPaths(layout.StoreAuto, top, stores.Paths{Docker: "no-docker", Podman: overlayPath})
	var dr *snapshot.DataRootError
	if !errors.As(err, &dr) || dr.Missing || dr.Kind != layout.StorePodman || !errors.Is(err, snapshot.ErrUnsupportedStore) {
		t.Fatalf("stores.OpenPaths(auto) on an overlay store = %v, want the Podman DataRootError", err)
	}
	_, rerr := podman.New(top, overlayPath).Resolve("desk:1")
	for _, e := range []error{err, rerr} {
		for _, w := range []string{"overlay", `driver = "btrfs"`, "/etc/containers/storage.conf", "podman system reset", filepath.Join(top, overlayPath)} {
			if e == nil || !strings.Contains(e.Error(), w) {
				t.Errorf("error %v does not mention %q", e, w)
			}
		}
	}
	t.Logf("message: %v", rerr)
}
