package commands

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
)

// TestGCRoot runs gc on a loop btrfs whose layers were made by
// rwlayer.Layers, with the layer this "system" booted, a subvolume nested
// in an old layer and a subvolume the user made under a dockroot name.
func TestGCRoot(t *testing.T) {
	const img = "var/lib/docker/btrfs/subvolumes/0123abcd"
	b := bootedLayers(t, img, "", 5)
	// Something running in an old layer made a nested subvolume (as
	// systemd-nspawn or Docker-in-the-image do).
	testenv.Subvolume(t, filepath.Join(b.Mnt, "@/rw.prev.4/var-lib-machines"))
	// The user's own subvolume under a previous-layer name.
	testenv.Subvolume(t, filepath.Join(b.Mnt, "@/rw.prev.6"))

	// This boot is running on @/rw.prev.3 (booted as it was left).
	bootJSON := filepath.Join(t.TempDir(), "boot.json")
	if err := bootrecord.Write(bootJSON, &bootrecord.Record{Schema: bootrecord.Schema, Layer: bootrecord.Layer{Subvolume: "@/rw.prev.3"}}); err != nil {
		t.Fatal(err)
	}
	exists := func(rel string) bool {
		_, err := os.Lstat(filepath.Join(b.Mnt, rel))
		return err == nil
	}
	before := testenv.Run(t, "btrfs", "subvolume", "list", b.Mnt)

	args := []string{"gc", "--top", b.Mnt, "--rwlayer", "@/rw", "--keep", "1", "--boot-json", bootJSON}
	code, out, stderr := drive(append(args, "--dry-run")...)
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, stderr)
	}
	t.Logf("dry run:\n%s", out)
	for _, want := range []string{"@/rw.prev.2", "@/rw.prev.3", "booted now", "@/rw.prev.6", "not created by dockroot", "current layer", "kept (--keep 1)", "dry run: nothing deleted"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q", want)
		}
	}
	if after := testenv.Run(t, "btrfs", "subvolume", "list", b.Mnt); after != before {
		t.Fatalf("dry run changed the subvolumes:\n%s\nbecame\n%s", before, after)
	}

	code, out, stderr = drive(args...)
	if code != 0 {
		t.Fatalf("gc: exit %d: %s\n%s", code, stderr, out)
	}
	t.Logf("gc:\n%s", out)
	for rel, want := range map[string]bool{
		"@/rw": true, "@/rw.prev.1": true, "@/rw.prev.3": true, "@/rw.prev.6": true, img: true,
		"@/rw.prev.2": false, "@/rw.prev.4": false,
	} {
		if exists(rel) != want {
			t.Errorf("%s exists = %v after gc, want %v", rel, !want, want)
		}
	}
	list := testenv.Run(t, "btrfs", "subvolume", "list", b.Mnt)
	if strings.Contains(list, "var-lib-machines") {
		t.Errorf("the subvolume nested in a deleted layer survived:\n%s", list)
	}
	if !strings.Contains(out, "deleted 2 layers") {
		t.Errorf("gc output: %s", out)
	}

	// Running it again finds nothing more to delete.
	code, out, _ = drive(args...)
	if code != 0 || !strings.Contains(out, "deleted 0 layers") {
		t.Errorf("second gc: exit %d\n%s", code, out)
	}
}

// TestGCBases: gc deletes the prepared bases whose image subvolume is
// gone and keeps the others; --bases deletes them all; --dry-run none.
func TestGCBases(t *testing.T) {
	testenv.RequireRoot(t, "btrfs", "mkfs.btrfs", "losetup")
	b := testenv.NewBtrfs(t, 512, "")
	subvols := filepath.Join(b.Mnt, "var/lib/docker/btrfs/subvolumes")
	if err := os.MkdirAll(subvols, 0o700); err != nil {
		t.Fatal(err)
	}
	podSubvols := filepath.Join(b.Mnt, layout.DefaultPodmanPath, "btrfs/subvolumes")
	if err := os.MkdirAll(podSubvols, 0o700); err != nil {
		t.Fatal(err)
	}
	bases := &rwlayer.Bases{Top: b.Mnt}
	saveIn := func(dir, name string) string {
		t.Helper()
		testenv.Subvolume(t, filepath.Join(dir, name))
		rel, err := filepath.Rel(b.Mnt, filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img := &snapshot.Image{Ref: "docker.io/library/" + name + ":1", ID: "sha256:" + name, Subvolume: rel}
		k, err := rwlayer.NewBaseKey(b.Mnt, "rw", img, "dev:machine", "fp")
		if err != nil {
			t.Fatal(err)
		}
		base, _, err := bases.Save(filepath.Join(dir, name), k)
		if err != nil {
			t.Fatal(err)
		}
		return base
	}
	save := func(name string) string { return saveIn(subvols, name) }
	kept, gone := save("kept"), save("gone")
	saveIn(podSubvols, "pod")
	testenv.Run(t, "btrfs", "subvolume", "delete", filepath.Join(subvols, "gone"))
	// Each base names its image's store, and gc never deletes in one.
	if code, out, stderr := drive(append([]string{"gc", "--top", b.Mnt, "--rwlayer", "rw", "--boot-json", filepath.Join(t.TempDir(), "none.json")}, "--dry-run")...); code != 0 ||
		!strings.Contains(out, "docker.io/library/kept:1 from the graphdriver store") || !strings.Contains(out, "docker.io/library/pod:1 from the podman store") {
		t.Errorf("dry run: exit %d; want each base with its store:\n%s%s", code, out, stderr)
	}
	if code, _, stderr := drive("gc", "--top", b.Mnt, "--rwlayer", layout.DefaultPodmanPath, "--dry-run"); code != 1 || !strings.Contains(stderr, "inside the image store") {
		t.Errorf("gc --rwlayer %s: exit %d, want 1 refusing a name inside Podman's store:\n%s", layout.DefaultPodmanPath, code, stderr)
	}
	exists := func(rel string) bool {
		_, err := os.Lstat(filepath.Join(b.Mnt, rel))
		return err == nil
	}
	args := []string{"gc", "--top", b.Mnt, "--rwlayer", "rw", "--boot-json", filepath.Join(t.TempDir(), "none.json")}
	if code, out, stderr := drive(append(args, "--dry-run")...); code != 0 || !exists(gone) || !strings.Contains(out, "is gone") {
		t.Fatalf("dry run: exit %d, base of the removed image exists = %v:\n%s%s", code, exists(gone), out, stderr)
	}
	code, out, stderr := drive(args...)
	if code != 0 || exists(gone) || !exists(kept) {
		t.Fatalf("gc: exit %d; the removed image's base exists = %v (want false), the other's = %v (want true):\n%s%s",
			code, exists(gone), exists(kept), out, stderr)
	}
	if code, out, stderr := drive(append(args, "--bases")...); code != 0 || exists(kept) {
		t.Fatalf("gc --bases: exit %d; a base is left:\n%s%s", code, out, stderr)
	}
}

// TestGCFromBootRecord: on a system dockroot booted, plain `dockroot gc`
// takes the rw layer and docker_path= from the boot record's command line
// and mounts the root device's top level privately for the run.
func TestGCFromBootRecord(t *testing.T) {
	const img = "docker/btrfs/subvolumes/0123abcd"
	b := bootedLayers(t, img, "docker", 3)
	bootJSON := filepath.Join(t.TempDir(), "boot.json")
	rec := &bootrecord.Record{Schema: bootrecord.Schema, RootDevicePath: b.Loop, LayerMode: "new",
		Cmdline: "root=LABEL=linux rootflags=subvol=@/rw,compress=zstd rw docker_path=docker",
		Layer:   bootrecord.Layer{Subvolume: "@/rw", Fresh: true}}
	if err := bootrecord.Write(bootJSON, rec); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := drive("gc", "--boot-json", bootJSON)
	if code != 0 {
		t.Fatalf("gc: exit %d: %s\n%s", code, stderr, out)
	}
	t.Logf("gc:\n%s", out)
	if want := "btrfs top level of " + b.Loop + ", rw layer @/rw, docker_path=docker containerd_path=var/lib/containerd podman_path=var/lib/containers/storage (from " + bootJSON + ")"; !strings.Contains(out, want) {
		t.Errorf("gc does not say what it found in the boot record (%q):\n%s", want, out)
	}
	for rel, want := range map[string]bool{"@/rw": true, "@/rw.prev.1": true, "@/rw.prev.2": false, img: true} {
		if _, err := os.Lstat(filepath.Join(b.Mnt, rel)); (err == nil) != want {
			t.Errorf("%s exists = %v after gc, want %v", rel, err == nil, want)
		}
	}
	testenv.AssertNoTopLevelMount(t)
}

// bootedLayers makes a loop btrfs holding an image subvolume img (with a
// marker file) and the layers of boots boots of it under the name @/rw,
// keeping 4 previous ones, as rwlayer.Layers makes them.
func bootedLayers(t *testing.T, img, dockerPath string, boots int) *testenv.Btrfs {
	t.Helper()
	testenv.RequireRoot(t, "btrfs", "mkfs.btrfs", "losetup")
	b := testenv.NewBtrfs(t, 512, "")
	if err := os.MkdirAll(filepath.Join(b.Mnt, filepath.Dir(img)), 0o700); err != nil {
		t.Fatal(err)
	}
	testenv.Subvolume(t, filepath.Join(b.Mnt, img))
	if err := os.WriteFile(filepath.Join(b.Mnt, img, "marker"), []byte("image"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &rwlayer.Layers{Top: b.Mnt, Name: "@/rw", Keep: 4, DockerPath: dockerPath, Image: "sha256:" + strings.Repeat("ab", 32)}
	for i := 0; i < boots; i++ {
		if _, err := l.Create(img); err != nil {
			t.Fatalf("boot %d: %v", i, err)
		}
	}
	return b
}

// TestGCFailedLayer: gc shows NAME.failed, the layer of a failed trial
// (issue 17 item 10), with its reason, and deletes it unless it is the
// layer this system booted; the last good boot's NAME.prev.1 stays.
func TestGCFailedLayer(t *testing.T) {
	const img = "var/lib/docker/btrfs/subvolumes/0123abcd"
	b := bootedLayers(t, img, "", 0)
	good, trial := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	l := &rwlayer.Layers{Top: b.Mnt, Name: "@/rw", Keep: 1, Image: good, LastGood: good}
	for i, image := range []string{good, trial, trial} {
		l.Image = image
		if _, err := l.Create(img); err != nil {
			t.Fatalf("boot %d: %v", i, err)
		}
	}
	exists := func(rel string) bool {
		_, err := os.Lstat(filepath.Join(b.Mnt, rel))
		return err == nil
	}
	if !exists("@/rw.failed") {
		t.Fatal("no @/rw.failed after two boots of an image on trial")
	}
	bootJSON := filepath.Join(t.TempDir(), "boot.json")
	booted := func(layer string) {
		t.Helper()
		if err := bootrecord.Write(bootJSON, &bootrecord.Record{Schema: bootrecord.Schema, Layer: bootrecord.Layer{Subvolume: layer}}); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"gc", "--top", b.Mnt, "--rwlayer", "@/rw", "--keep", "1", "--boot-json", bootJSON}

	booted("@/rw.failed")
	code, out, stderr := drive(args...)
	if code != 0 || !exists("@/rw.failed") || !strings.Contains(out, "booted now") {
		t.Fatalf("gc while @/rw.failed is booted: exit %d, %s\n%s", code, stderr, out)
	}

	booted("@/rw")
	code, out, stderr = drive(append(args, "--dry-run")...)
	t.Logf("dry run:\n%s", out)
	if code != 0 || !strings.Contains(out, "@/rw.failed") || !strings.Contains(out, "of image bbbbbbbbbbbb that was never marked good") ||
		!strings.Contains(out, "@/rw.prev.1 stays the last good boot's") {
		t.Errorf("dry run: exit %d, %s\n%s", code, stderr, out)
	}
	code, out, stderr = drive(args...)
	if code != 0 || exists("@/rw.failed") || !exists("@/rw.prev.1") || !exists("@/rw") || !strings.Contains(out, "deleted 1 layers") {
		t.Errorf("gc: exit %d, %s\n%s", code, stderr, out)
	}
}
