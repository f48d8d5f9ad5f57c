package rwlayer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/testenv"
)

// TestLayersRefuseSymlinkAboveName is issue 17 item 3: with
// rootflags=subvol=link/sub/rw where link is a symlink two levels above
// NAME, boots 1-3 used to succeed (renames follow the link) and every boot
// from the 4th failed (deletion refuses a path through a symlink). The
// first boot must refuse instead, naming the symlink, and change nothing.
func TestLayersRefuseSymlinkAboveName(t *testing.T) {
	fs, _ := newLayerFS(t, "rw", 1)
	top := fs.Mnt
	if err := os.MkdirAll(filepath.Join(top, "real/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(top, "link")); err != nil {
		t.Fatal(err)
	}
	l := &Layers{Top: top, Name: "link/sub/rw", Keep: 1, Log: t.Logf}
	before := subvolumePaths(t, top)
	for n := 1; n <= 4; n++ {
		_, err := l.Create(testImageSubvol)
		if err == nil {
			continue
		}
		var ne *NameError
		if n != 1 || !errors.As(err, &ne) || ne.Symlink != filepath.Join(top, "link") || !strings.Contains(err.Error(), filepath.Join(top, "link")) {
			t.Fatalf("boot %d: %v; want boot 1 refused with a *NameError naming the symlink %s", n, err, filepath.Join(top, "link"))
		}
		if after := subvolumePaths(t, top); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Errorf("the refusal changed the subvolumes: %v -> %v", before, after)
		}
		if _, err := l.List(); !errors.As(err, &ne) {
			t.Errorf("List through the symlink: %v, want the same refusal", err)
		}
		return
	}
	t.Fatal("four boots through a symlinked directory above NAME succeeded; want boot 1 refused")
}

// TestLayersProtectionsByIdentity is issue 17 item 12: the Docker data root
// and the state directory are recognised by device and inode, not by the
// path's spelling, so neither a data root reached through a symlink nor
// docker_path=. lets a layer be made in it, and deletion refuses them the
// same way.
func TestLayersProtectionsByIdentity(t *testing.T) {
	fs, _ := newLayerFS(t, "rw", 1)
	top := fs.Mnt
	// A second Docker data root at data/docker, configured as "dr", a
	// symlink to it.
	img := "data/docker/btrfs/subvolumes/img"
	if err := os.MkdirAll(filepath.Join(top, filepath.Dir(img)), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Subvolume(t, filepath.Join(top, img))
	if err := os.Symlink("data/docker", filepath.Join(top, "dr")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dockerPath, image, want string
	}{
		{"InsideSymlinkedDataRoot", "dr", img, "inside the Docker data root"},
		{"ContainsSymlinkedDataRoot", "dr", img, "contains the Docker data root"},
		{"DockerPathDot", ".", testImageSubvol, "inside the Docker data root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := map[string]string{
				"InsideSymlinkedDataRoot":   "data/docker/rw",
				"ContainsSymlinkedDataRoot": "data",
				"DockerPathDot":             "rw",
			}[tc.name]
			l := &Layers{Top: top, Name: name, Keep: 1, DockerPath: tc.dockerPath, Log: t.Logf}
			before := subvolumePaths(t, top)
			_, err := l.Prepare(tc.image)
			var ne *NameError
			if !errors.As(err, &ne) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Prepare(%s) with docker path %q: %v; want a *NameError saying %q", name, tc.dockerPath, err, tc.want)
			}
			if after := subvolumePaths(t, top); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("subvolumes changed: %v -> %v", before, after)
			}
		})
	}
	t.Run("DeleteInSymlinkedDataRoot", func(t *testing.T) {
		l := &Layers{Top: top, Name: "rw", Keep: 1, DockerPath: "dr", Log: t.Logf}
		err := l.DeleteSubvolume(img)
		var ne *NotOwnedError
		if !errors.As(err, &ne) || !ne.Protected || !strings.Contains(err.Error(), "Docker data root") {
			t.Errorf("DeleteSubvolume(%s) with the data root behind a symlink: %v; want a protected refusal", img, err)
		}
	})
	t.Run("StateDirThroughSymlink", func(t *testing.T) {
		if err := os.MkdirAll(filepath.Join(top, ".dockroot"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(".dockroot", filepath.Join(top, "st")); err != nil {
			t.Fatal(err)
		}
		l := &Layers{Top: top, Name: "st/rw", Keep: 1, Log: t.Logf}
		if _, err := l.Prepare(testImageSubvol); !errors.As(err, new(*NameError)) {
			t.Errorf("Prepare(st/rw), st -> .dockroot: %v; want a *NameError", err)
		}
		if _, err := os.Lstat(filepath.Join(top, ".dockroot/rw.dockroot-tmp")); !os.IsNotExist(err) {
			t.Errorf("a layer was made in the state directory: %v", err)
		}
	})
}
