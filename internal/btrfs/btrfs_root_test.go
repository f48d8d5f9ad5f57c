//go:build linux

package btrfs

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/testenv"
	"golang.org/x/sys/unix"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// subvolumeList returns the paths `btrfs subvolume list` prints, the
// reference this package's view is checked against.
func subvolumeList(t *testing.T, mnt string) []string {
	t.Helper()
	var paths []string
	for _, line := range strings.Split(testenv.Run(t, "btrfs", "subvolume", "list", mnt), "\n") {
		if i := strings.Index(line, " path "); i >= 0 {
			paths = append(paths, line[i+len(" path "):])
		}
	}
	sort.Strings(paths)
	return paths
}

func TestSubvolumeBasics(t *testing.T) {
	testenv.RequireRoot(t, "btrfs")
	fs := testenv.NewBtrfs(t, 256, "")
	src := filepath.Join(fs.Mnt, "src")
	if err := CreateSubvolume(src); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "etc/hostname"), "image\n")
	if err := os.Symlink("/outside", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}

	for path, want := range map[string]bool{fs.Mnt: true, src: true, filepath.Join(src, "etc"): false, filepath.Join(src, "link"): false} {
		got, err := IsSubvolume(path)
		if err != nil || got != want {
			t.Errorf("IsSubvolume(%s) = %v, %v; want %v", path, got, err, want)
		}
	}
	if ok, err := IsBtrfs(fs.Mnt); err != nil || !ok {
		t.Errorf("IsBtrfs(%s) = %v, %v; want true", fs.Mnt, ok, err)
	}
	if ok, err := IsBtrfs("/proc"); err != nil || ok {
		t.Errorf("IsBtrfs(/proc) = %v, %v; want false", ok, err)
	}
	if id, err := SubvolID(fs.Mnt); err != nil || id != TopLevelID {
		t.Errorf("SubvolID(top) = %d, %v; want %d", id, err, TopLevelID)
	}
	srcID, err := SubvolID(filepath.Join(src, "etc"))
	if err != nil || srcID < 256 {
		t.Fatalf("SubvolID(src/etc) = %d, %v", srcID, err)
	}

	if err := Snapshot(src, fs.Mnt, "snap", false); err != nil {
		t.Fatal(err)
	}
	if err := Snapshot(src, fs.Mnt, "ro", true); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(fs.Mnt, "snap")
	b, err := os.ReadFile(filepath.Join(snap, "etc/hostname"))
	if err != nil || string(b) != "image\n" {
		t.Errorf("snapshot content = %q, %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(snap, "link")); err != nil || target != "/outside" {
		t.Errorf("snapshot symlink = %q, %v", target, err)
	}
	srcInfo, err := SubvolInfo(src)
	if err != nil {
		t.Fatal(err)
	}
	info, err := SubvolInfo(snap)
	if err != nil {
		t.Fatal(err)
	}
	if info.ParentUUID != srcInfo.UUID || info.UUID == srcInfo.UUID || info.UUID.IsZero() {
		t.Errorf("snapshot uuid %s parent %s; source uuid %s", info.UUID, info.ParentUUID, srcInfo.UUID)
	}
	if info.Name != "snap" || info.ParentID != TopLevelID || info.ReadOnly || info.ID == srcInfo.ID {
		t.Errorf("snapshot info = %+v", info)
	}
	if ro, err := SubvolInfo(filepath.Join(fs.Mnt, "ro")); err != nil || !ro.ReadOnly {
		t.Errorf("read-only snapshot info = %+v, %v", ro, err)
	}
	if err := os.WriteFile(filepath.Join(fs.Mnt, "ro", "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into read-only snapshot: %v, want EROFS", err)
	}
	if err := Snapshot(src, fs.Mnt, "a/b", false); err == nil {
		t.Error("Snapshot accepted a name with a slash")
	}
	if err := Delete(fs.Mnt); err == nil {
		t.Error("Delete(top level) succeeded")
	}
	if err := Delete(filepath.Join(src, "etc")); err == nil {
		t.Error("Delete(plain directory) succeeded")
	}
}

func TestListChildren(t *testing.T) {
	testenv.RequireRoot(t, "btrfs")
	fs := testenv.NewBtrfs(t, 256, "")
	parent := filepath.Join(fs.Mnt, "parent")
	if err := CreateSubvolume(parent); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"var/lib", "deep/er/still"} {
		if err := os.MkdirAll(filepath.Join(parent, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"a", "deep/er/still/c", "var/lib/machines"}
	for _, p := range want {
		if err := CreateSubvolume(filepath.Join(parent, p)); err != nil {
			t.Fatal(err)
		}
	}
	// A grandchild is not a direct child and must not be listed.
	if err := CreateSubvolume(filepath.Join(parent, "a", "grandchild")); err != nil {
		t.Fatal(err)
	}
	got, err := ListChildren(parent)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, c := range got {
		paths = append(paths, c.Path)
		id, err := SubvolID(filepath.Join(parent, c.Path))
		if err != nil || id != c.ID {
			t.Errorf("child %s: listed id %d, SubvolID %d, %v", c.Path, c.ID, id, err)
		}
	}
	sort.Strings(paths)
	if strings.Join(paths, ",") != strings.Join(want, ",") {
		t.Errorf("ListChildren = %v, want %v", paths, want)
	}
	if kids, err := ListChildren(filepath.Join(parent, "var/lib/machines")); err != nil || len(kids) != 0 {
		t.Errorf("ListChildren(leaf) = %v, %v", kids, err)
	}
	if _, err := ListChildren(filepath.Join(parent, "var")); err == nil {
		t.Error("ListChildren(plain dir) succeeded")
	}
	top, err := ListChildren(fs.Mnt)
	if err != nil || len(top) != 1 || top[0].Path != "parent" {
		t.Errorf("ListChildren(top) = %+v, %v", top, err)
	}
}

func TestDeleteRecursive(t *testing.T) {
	testenv.RequireRoot(t, "btrfs")
	fs := testenv.NewBtrfs(t, 256, "")
	keep := filepath.Join(fs.Mnt, "keep")
	layer := filepath.Join(fs.Mnt, "layer")
	for _, p := range []string{keep, layer} {
		if err := CreateSubvolume(p); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(layer, "var/lib/portables/x"), "x")
	for _, p := range []string{"var/lib/machines", "var/lib/machines/inner", "var/lib/docker"} {
		if err := CreateSubvolume(filepath.Join(layer, p)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(layer, "var/lib/machines/inner/file"), "deep")
	// A read-only nested subvolume holding a child of its own.
	if err := Snapshot(filepath.Join(layer, "var/lib/machines"), filepath.Join(layer, "var/lib"), "ro", false); err != nil {
		t.Fatal(err)
	}
	if err := CreateSubvolume(filepath.Join(layer, "var/lib/ro/child")); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "btrfs", "property", "set", filepath.Join(layer, "var/lib/ro"), "ro", "true")

	before := subvolumeList(t, fs.Mnt)
	if len(before) != 7 {
		t.Fatalf("setup: btrfs subvolume list = %v", before)
	}
	if err := Delete(layer); !errors.Is(err, unix.ENOTEMPTY) {
		t.Errorf("non-recursive Delete of a layer with children: %v, want ENOTEMPTY", err)
	}
	if err := DeleteRecursive(layer); err != nil {
		t.Fatal(err)
	}
	if after := subvolumeList(t, fs.Mnt); strings.Join(after, ",") != "keep" {
		t.Errorf("after DeleteRecursive: btrfs subvolume list = %v, want [keep]", after)
	}
	if _, err := os.Lstat(layer); !os.IsNotExist(err) {
		t.Errorf("layer still present: %v", err)
	}
	if err := DeleteRecursive(fs.Mnt); err == nil {
		t.Error("DeleteRecursive(top level) succeeded")
	}
}
