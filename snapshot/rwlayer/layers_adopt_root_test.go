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
// layer) and still refuse every other kind of unowned NAME.
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
	l := &Layers{Top: top, Name: "docker_rwlayer", Keep: 2, Log: func(f string, a ...any) {
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
		p, err := l.Prepare(desk2.Subvolume)
		if err != nil {
			t.Fatalf("Prepare over the ancestor's layer: %v", err)
		}
		res, err := p.Commit()
		if err != nil || len(res.Warnings) > 0 {
			t.Fatalf("Commit: %+v, %v", res, err)
		}
		want := fmt.Sprintf("adopted docker_rwlayer: a snapshot of Docker layer %s, created by the ancestor hook", filepath.Base(desk1.Subvolume))
		if !strings.Contains(strings.Join(logs, "\n"), want) {
			t.Errorf("log lacks %q:\n%s", want, strings.Join(logs, "\n"))
		}
		if got := readFile(t, filepath.Join(top, "docker_rwlayer.prev.1/ancestor")); got != "docker_rwlayer" {
			t.Errorf("docker_rwlayer.prev.1 is not the ancestor's layer: ancestor = %q", got)
		}
		if _, err := os.Stat(filepath.Join(top, "docker_rwlayer/ancestor")); !os.IsNotExist(err) {
			t.Errorf("the new layer holds the ancestor's file: %v", err)
		}
		r := stateRecord("docker_rwlayer.prev.1")
		if r == nil || r.Source != AdoptedSource || r.Family != "docker_rwlayer" {
			t.Errorf("state record of the adopted layer = %+v, want source %q in family docker_rwlayer", r, AdoptedSource)
		}
		list, err := l.List()
		if err != nil || len(list) != 2 || !list[1].Owned || list[1].Source != AdoptedSource {
			t.Errorf("List = %+v, %v; want the new layer and the adopted one", list, err)
		}
		// The Docker layer it was a snapshot of is untouched.
		if _, err := store.Resolve(fx.Desk1); err != nil {
			t.Errorf("desk:1 no longer resolves: %v", err)
		}
	})

	t.Run("PreviousLayer", func(t *testing.T) {
		// An ancestor snapshot under a previous-layer name beyond keep=2 is
		// adopted too, so the rotation may delete it instead of refusing.
		ancestorSnapshot(base, "docker_rwlayer.prev.5")
		if _, err := l.Create(desk2.Subvolume); err != nil {
			t.Fatalf("Create with the ancestor's docker_rwlayer.prev.5: %v", err)
		}
		if _, err := os.Stat(filepath.Join(top, "docker_rwlayer.prev.5")); !os.IsNotExist(err) {
			t.Errorf("adopted docker_rwlayer.prev.5 beyond keep=2 still there: %v", err)
		}
		if got := readFile(t, filepath.Join(top, "docker_rwlayer.prev.2/ancestor")); got != "docker_rwlayer" {
			t.Errorf("the first adopted layer did not rotate to prev.2: ancestor = %q", got)
		}
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
			ul := &Layers{Top: top, Name: "mine", Keep: 1, Log: t.Logf}
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
