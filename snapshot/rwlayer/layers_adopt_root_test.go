package rwlayer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
)

// TestLayersAdoptAncestor emulates a machine migrating from the ancestor
// mkinitcpio hook: a real dockerd's btrfs store, and docker_rwlayer made
// the way the ancestor made it, `btrfs subvolume snapshot` of the image's
// layer subvolume. dockroot must adopt it (keeping it as the previous
// layer, outside the automatic deletion) only when NAME is a snapshot of
// the booted image's top layer, and refuse every other unowned NAME and
// every unowned NAME.prev.N, Docker snapshots included (issue 17 item 1).
func TestLayersAdoptAncestor(t *testing.T) {
	testenv.RequireRoot(t, "btrfs", "dockerd", "docker")
	fs := testenv.NewBtrfs(t, 1024, "dockroot-adopt")
	top := fs.Mnt
	d := testenv.StartDockerd(t, filepath.Join(top, layout.DefaultDockerPath))
	fx := d.BuildFixtures(t)
	store := graphdriver.New(top, layout.DefaultDockerPath)
	desk1, err := store.Resolve(fx.Desk1)
	if err != nil {
		t.Fatal(err)
	}
	desk2, err := store.Resolve(fx.Desk2)
	if err != nil {
		t.Fatal(err)
	}
	base, err := store.Resolve(fx.Base)
	if err != nil {
		t.Fatal(err)
	}

	var logs []string
	// keep=0: the adopted layer must survive boots that delete every
	// previous layer of dockroot's own.
	l := &Layers{Top: top, Name: "docker_rwlayer", Keep: 0, AdoptFrom: desk1.Subvolume, Log: func(f string, a ...any) {
		logs = append(logs, fmt.Sprintf(f, a...))
		t.Logf(f, a...)
	}}
	ancestorSnapshot := func(img *snapshot.Image, name string) {
		t.Helper()
		testenv.Run(t, "btrfs", "subvolume", "snapshot", filepath.Join(top, img.Subvolume), filepath.Join(top, name))
		putFile(t, filepath.Join(top, name, "ancestor"), name)
	}
	// stateRecord is the record of the subvolume now at rel (by ID and
	// UUID: a record's path may lag the names by one Commit).
	stateRecord := func(rel string) *layerRecord {
		t.Helper()
		st, err := loadLayerState(filepath.Join(top, layout.StateDir, LayerStateFile), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := btrfs.SubvolInfo(filepath.Join(top, rel))
		if err != nil {
			return nil
		}
		return st.owner(info.ID, info.UUID.String())
	}

	t.Run("CurrentLayer", func(t *testing.T) {
		ancestorSnapshot(desk1, "docker_rwlayer")
		for n := 1; n <= 3; n++ {
			res, err := l.Create(desk1.Subvolume)
			if err != nil || len(res.Warnings) > 0 {
				t.Fatalf("boot %d over the ancestor's layer with keep=0: %+v, %v", n, res, err)
			}
		}
		adopted := "docker_rwlayer" + adoptedSuffix
		want := "adopted docker_rwlayer: a snapshot of " + desk1.Subvolume
		if !strings.Contains(strings.Join(logs, "\n"), want) || !strings.Contains(strings.Join(logs, "\n"), "dockroot gc --adopted") {
			t.Errorf("log lacks %q and the way to remove it:\n%s", want, strings.Join(logs, "\n"))
		}
		if got := readFile(t, filepath.Join(top, adopted, "ancestor")); got != "docker_rwlayer" {
			t.Errorf("%s is not the ancestor's layer: ancestor = %q", adopted, got)
		}
		if r := stateRecord(adopted); r == nil || !r.Adopted || r.Source != AdoptedSource {
			t.Errorf("state record of the adopted layer = %+v, want adopted", r)
		}
		if _, err := os.Lstat(filepath.Join(top, "docker_rwlayer.prev.1")); !os.IsNotExist(err) {
			t.Errorf("keep=0 left docker_rwlayer.prev.1: %v", err)
		}
		list, err := l.List()
		if err != nil || len(list) != 2 || !list[1].Adopted || list[1].Name != adopted {
			t.Errorf("List = %+v, %v; want the current layer and the adopted one", list, err)
		}
		// Only an explicit call deletes it.
		deleted, err := l.DeleteAdopted()
		if err != nil || len(deleted) != 1 || deleted[0] != adopted {
			t.Errorf("DeleteAdopted = %v, %v", deleted, err)
		}
		if _, err := os.Lstat(filepath.Join(top, adopted)); !os.IsNotExist(err) {
			t.Errorf("%s still there after DeleteAdopted: %v", adopted, err)
		}
		if _, err := store.Resolve(fx.Desk1); err != nil {
			t.Errorf("desk:1 no longer resolves: %v", err)
		}
	})

	t.Run("NeverAPreviousLayer", func(t *testing.T) {
		// A Docker snapshot under a previous-layer name is someone's, not
		// the ancestor's (it only ever made NAME).
		ancestorSnapshot(desk1, "docker_rwlayer.prev.5")
		_, err := l.Create(desk1.Subvolume)
		var ne *NotOwnedError
		if !errors.As(err, &ne) || ne.Action != "rotate" {
			t.Fatalf("Create with a Docker snapshot at docker_rwlayer.prev.5: %v, want a refusal", err)
		}
		if got := readFile(t, filepath.Join(top, "docker_rwlayer.prev.5/ancestor")); got != "docker_rwlayer.prev.5" {
			t.Errorf("docker_rwlayer.prev.5 changed: %q", got)
		}
		testenv.Run(t, "btrfs", "subvolume", "delete", filepath.Join(top, "docker_rwlayer.prev.5"))
	})

	// Docker subvolumes that are not the booted image's top layer: a
	// container's layer (docker create makes <id> and <id>-init) and a
	// lower image layer (base:1's, under desk:1).
	subvols := filepath.Join(top, layout.DefaultDockerPath, "btrfs/subvolumes")
	beforeCreate, _ := os.ReadDir(subvols)
	d.Docker(t, "create", "--name", "adopt-c1", fx.Desk1, "/bin/true")
	afterCreate, _ := os.ReadDir(subvols)
	known := map[string]bool{}
	for _, e := range beforeCreate {
		known[e.Name()] = true
	}
	var containerLayer, initLayer string
	for _, e := range afterCreate {
		switch n := e.Name(); {
		case known[n]:
		case strings.HasSuffix(n, "-init"):
			initLayer = filepath.Join(layout.DefaultDockerPath, "btrfs/subvolumes", n)
		default:
			containerLayer = filepath.Join(layout.DefaultDockerPath, "btrfs/subvolumes", n)
		}
	}
	if containerLayer == "" || initLayer == "" {
		t.Fatalf("docker create made no container layers: %v -> %v", beforeCreate, afterCreate)
	}
	for _, tc := range []struct{ name, src string }{
		{"ContainerLayer", containerLayer},
		{"InitLayer", initLayer},
		{"LowerImageLayer", base.Subvolume},
		{"AnotherImagesTopLayer", desk2.Subvolume},
	} {
		t.Run("Refuses"+tc.name, func(t *testing.T) {
			ul := &Layers{Top: top, Name: "mine", Keep: 0, AdoptFrom: desk1.Subvolume, Log: t.Logf}
			path := filepath.Join(top, "mine")
			testenv.Run(t, "btrfs", "subvolume", "snapshot", filepath.Join(top, tc.src), path)
			putFile(t, filepath.Join(path, "keep"), "mine")
			_, err := ul.Create(desk1.Subvolume)
			var ne *NotOwnedError
			if !errors.As(err, &ne) || ne.Action != "replace" {
				t.Fatalf("Create over a snapshot of the %s: %v, want a refusal to replace", tc.name, err)
			}
			if got := readFile(t, filepath.Join(path, "keep")); got != "mine" {
				t.Errorf("the user's file = %q", got)
			}
			if r := stateRecord("mine"); r != nil {
				t.Errorf("refused layer recorded: %+v", r)
			}
			testenv.Run(t, "btrfs", "subvolume", "delete", path)
		})
	}
	t.Run("NothingWithoutAdoptFrom", func(t *testing.T) {
		ul := &Layers{Top: top, Name: "mine", Keep: 0, Log: t.Logf}
		path := filepath.Join(top, "mine")
		ancestorSnapshot(desk1, "mine")
		if _, err := ul.Create(desk1.Subvolume); !errors.Is(err, ErrNotOwned) {
			t.Fatalf("Create over the ancestor's layer with adoption off: %v, want a refusal", err)
		}
		testenv.Run(t, "btrfs", "subvolume", "delete", path)
	})

	refused := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"PlainSubvolume", func(t *testing.T, path string) { testenv.Subvolume(t, path) }},
		{"SnapshotOfANonDockerSubvolume", func(t *testing.T, path string) {
			src := filepath.Join(top, "home")
			if _, err := os.Stat(src); err != nil {
				testenv.Subvolume(t, src)
			}
			testenv.Run(t, "btrfs", "subvolume", "snapshot", src, path)
		}},
		{"SnapshotOfOneOfOurLayers", func(t *testing.T, path string) {
			// A snapshot of a layer is the user's backup, not the ancestor's.
			testenv.Run(t, "btrfs", "subvolume", "snapshot", filepath.Join(top, "docker_rwlayer"), path)
		}},
		{"PlainDirectory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range refused {
		t.Run("Refuses"+tc.name, func(t *testing.T) {
			ul := &Layers{Top: top, Name: "mine", Keep: 1, AdoptFrom: desk1.Subvolume, Log: t.Logf}
			path := filepath.Join(top, "mine")
			tc.make(t, path)
			putFile(t, filepath.Join(path, "keep"), "mine")
			_, err := ul.Create(desk2.Subvolume)
			var ne *NotOwnedError
			if !errors.As(err, &ne) || ne.Action != "replace" {
				t.Fatalf("Create over %s: %v, want a refusal to replace", tc.name, err)
			}
			if got := readFile(t, filepath.Join(path, "keep")); got != "mine" {
				t.Errorf("the user's file = %q", got)
			}
			if r := stateRecord("mine"); r != nil {
				t.Errorf("refused layer recorded: %+v", r)
			}
			if _, err := os.Lstat(filepath.Join(top, "mine"+tmpSuffix)); !os.IsNotExist(err) {
				t.Errorf("refusal left a temporary layer: %v", err)
			}
			if ok, _ := btrfs.IsSubvolume(path); ok {
				testenv.Run(t, "btrfs", "subvolume", "delete", path)
			} else if err := os.RemoveAll(path); err != nil {
				t.Fatal(err)
			}
		})
	}
}
