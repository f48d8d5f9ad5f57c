package stores_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/stores"
)

// TestAutoBothEnginesRoot puts a private dockerd and a rootful podman, both
// with the btrfs driver, on one loop btrfs at their default paths, and
// checks dockroot.store=auto: an image only one engine has is found in it,
// a name both have is an *AmbiguousError naming both stores, and a name
// neither has lists the tags of both.
func TestAutoBothEnginesRoot(t *testing.T) {
	testenv.RequireRoot(t, "dockerd", "docker", "podman")
	b := testenv.NewBtrfs(t, 1024, "dockroot-stores")
	d := testenv.StartDockerd(t, filepath.Join(b.Mnt, layout.DefaultDockerPath))
	p := testenv.NewPodman(t, filepath.Join(b.Mnt, layout.DefaultPodmanPath))

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := testenv.Run(t, "tar", "-C", dir, "-c", ".")
	dockerID, err := d.Run(strings.NewReader(tarball), "import", "-", "docker-only:1")
	if err != nil {
		t.Fatal(err)
	}
	d.Docker(t, "tag", "docker-only:1", "both:1")
	podmanID, err := p.Run(strings.NewReader(tarball), "import", "-", "podman-only:1")
	if err != nil {
		t.Fatal(err)
	}
	p.Podman(t, "tag", "podman-only:1", "both:1")
	dockerID, podmanID = strings.TrimSpace(dockerID), strings.TrimSpace(podmanID)

	s, err := stores.OpenPaths(layout.StoreAuto, b.Mnt, stores.Paths{})
	if err != nil {
		t.Fatal(err)
	}
	if img, err := s.Resolve("docker-only:1"); err != nil || img.ID != dockerID ||
		!strings.HasPrefix(img.Subvolume, layout.DefaultDockerPath+"/btrfs/subvolumes/") {
		t.Errorf("Resolve(docker-only:1) = %+v, %v; want %s in the Docker store", img, err, dockerID)
	}
	if img, err := s.Resolve("podman-only:1"); err != nil || img.ID != podmanID ||
		!strings.HasPrefix(img.Subvolume, layout.DefaultPodmanPath+"/btrfs/subvolumes/") {
		t.Errorf("Resolve(podman-only:1) = %+v, %v; want %s in the Podman store", img, err, podmanID)
	}
	_, err = s.Resolve("both:1")
	var amb *stores.AmbiguousError
	if !errors.As(err, &amb) || strings.Join(amb.Stores, ",") != layout.StoreGraphDriver+","+layout.StorePodman {
		t.Fatalf("Resolve(both:1) = %v, want an *AmbiguousError naming both stores", err)
	}
	t.Logf("message: %v", err)
	_, err = s.Resolve("neither:1")
	var nf *snapshot.NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("Resolve(neither:1) = %v, want *NotFoundError", err)
	}
	want := "both:1,docker-only:1,localhost/both:1,localhost/podman-only:1"
	if strings.Join(nf.Available, ",") != want {
		t.Errorf("Available = %v, want %s", nf.Available, want)
	}
	t.Logf("message: %v", err)
	// Each store alone, as dockroot.store= names it.
	for kind, ref := range map[string]string{layout.StoreGraphDriver: "both:1", layout.StorePodman: "both:1"} {
		one, err := stores.OpenPaths(kind, b.Mnt, stores.Paths{})
		if err != nil {
			t.Fatal(err)
		}
		if img, err := one.Resolve(ref); err != nil || (kind == layout.StorePodman) != (img.ID == podmanID) {
			t.Errorf("store %s: Resolve(%s) = %+v, %v", kind, ref, img, err)
		}
	}
}
