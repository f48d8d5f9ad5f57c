package rwlayer

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
)

// TestBasesSaveFindPrune: a saved base is found only by its own key, is
// read-only, and a save replaces the base of its own slot and those whose
// image is gone, never another slot's. A base that is not read-only or
// lacks its sidecar is not used.
func TestBasesSaveFindPrune(t *testing.T) {
	fs, _ := newLayerFS(t, "rw", 1)
	b := &Bases{Top: fs.Mnt, Log: t.Logf}
	img := &snapshot.Image{Ref: "docker.io/library/a:1", ID: "sha256:a1", Subvolume: testImageSubvol}
	key := func(ref, fp string) BaseKey {
		t.Helper()
		i := *img
		i.Ref = ref
		k, err := NewBaseKey(fs.Mnt, "rw", &i, "dev:machine", fp)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	// The "pending layer" a boot would save: a snapshot of the image
	// with a top-layer file in it.
	pending := filepath.Join(fs.Mnt, "pending")
	if err := btrfs.Snapshot(filepath.Join(fs.Mnt, testImageSubvol), fs.Mnt, "pending", false); err != nil {
		t.Fatal(err)
	}
	putFile(t, filepath.Join(pending, "etc/hostname"), "machine\n")

	a1 := key("docker.io/library/a:1", "fp1")
	if _, ok := b.Find(a1); ok {
		t.Fatal("Find found a base before any was saved")
	}
	rel, deleted, err := b.Save(pending, a1)
	if err != nil || len(deleted) != 0 {
		t.Fatalf("Save = %q, %v, %v", rel, deleted, err)
	}
	if got, ok := b.Find(a1); !ok || got != rel {
		t.Fatalf("Find(saved key) = %q, %v; want %q", got, ok, rel)
	}
	if got := readFile(t, filepath.Join(fs.Mnt, rel, "etc/hostname")); got != "machine\n" {
		t.Errorf("the base's etc/hostname = %q, want the pending layer's", got)
	}
	if err := os.WriteFile(filepath.Join(fs.Mnt, rel, "x"), nil, 0o644); err == nil {
		t.Error("the base is writable")
	}
	if _, ok := b.Find(key("docker.io/library/a:1", "fp2")); ok {
		t.Error("Find matched another fingerprint")
	}

	// Another menu entry (tag b:1) keeps its own base.
	b1 := key("docker.io/library/b:1", "fp1")
	relB, deleted, err := b.Save(pending, b1)
	if err != nil || len(deleted) != 0 {
		t.Fatalf("Save(b:1) = %q, %v, %v; want a:1's base kept", relB, deleted, err)
	}
	// a:1's top layer changed: its new base replaces its old one only.
	a2 := key("docker.io/library/a:1", "fp2")
	relA2, deleted, err := b.Save(pending, a2)
	if err != nil || len(deleted) != 1 || deleted[0] != rel {
		t.Fatalf("Save(a:1, new fingerprint) = %q, deleted %v, %v; want %s deleted", relA2, deleted, err, rel)
	}
	if _, err := os.Lstat(filepath.Join(fs.Mnt, rel)); !os.IsNotExist(err) {
		t.Errorf("the replaced base %s is still there: %v", rel, err)
	}
	if _, ok := b.Find(b1); !ok {
		t.Error("b:1's base went with a:1's save")
	}

	// A base without its sidecar is not used, and Save replaces it.
	if err := os.Remove(filepath.Join(fs.Mnt, relA2+".json")); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Find(a2); ok {
		t.Error("Find used a base without its sidecar")
	}
	if _, _, err := b.Save(pending, a2); err != nil {
		t.Fatalf("Save over a base without its sidecar: %v", err)
	}
	if _, ok := b.Find(a2); !ok {
		t.Error("Save did not replace the incomplete base")
	}

	// b:1's image subvolume goes (docker rmi): the next save deletes its base.
	other := filepath.Join(fs.Mnt, "var/lib/docker/btrfs/subvolumes/other")
	testenv.Subvolume(t, other)
	gone := b1
	gone.ImageSubvol = "var/lib/docker/btrfs/subvolumes/other"
	gone.Ref = "docker.io/library/c:1"
	relC, _, err := b.Save(pending, gone)
	if err != nil {
		t.Fatal(err)
	}
	if err := btrfs.Delete(other); err != nil {
		t.Fatal(err)
	}
	_, deleted, err = b.Save(pending, a1)
	if err != nil || len(deleted) != 2 || !slices.Contains(deleted, relC) || !slices.Contains(deleted, filepath.Join(layout.BasesDir, a2.Name())) {
		t.Errorf("Save after c:1's image went: deleted %v, %v; want %s and a:1's previous base", deleted, err, relC)
	}
	list, err := b.List()
	if err != nil || len(list) != 2 {
		t.Errorf("List = %+v, %v; want a:1's and b:1's", list, err)
	}
	if err := b.Delete("../rw"); err == nil {
		t.Error("Delete accepted a path out of the bases directory")
	}
}
