package graphdriver

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/snapshot"
	"golang.org/x/sys/unix"
)

// diskStore writes a minimal, valid btrfs graph-driver store for desk:1
// into a temporary data root and returns the root, the image ID and the
// layerdb cache-id path. The subvolume is a plain directory: the store
// only checks that it is there.
func diskStore(t *testing.T) (root, id, cacheIDFile string) {
	t.Helper()
	top := t.TempDir()
	root = filepath.Join(top, "var/lib/docker")
	cfg := `{"created":"2026-01-02T03:04:05Z","rootfs":{"type":"layers","diff_ids":["sha256:` + hex64 + `"]}}`
	sum := sha256.Sum256([]byte(cfg))
	id = "sha256:" + hex.EncodeToString(sum[:])
	chain, _ := snapshot.ChainID([]string{"sha256:" + hex64})
	cacheIDFile = filepath.Join(root, layerdbDir, strings.TrimPrefix(chain, "sha256:"), "cache-id")
	for name, content := range map[string]string{
		filepath.Join(root, configPath(id)):              cfg,
		filepath.Join(root, reposFile):                   `{"Repositories":{"desk":{"desk:1":"` + id + `"}}}`,
		cacheIDFile:                                      "c0ffee",
		filepath.Join(root, subvolumeDir, "c0ffee", "x"): "",
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, id, cacheIDFile
}

// resolveWithin runs Resolve("desk:1") and fails the test if it does not
// return within a few seconds (a fifo would block it forever).
func resolveWithin(t *testing.T, s snapshot.Store) (*snapshot.Image, error) {
	t.Helper()
	type result struct {
		img *snapshot.Image
		err error
	}
	done := make(chan result, 1)
	go func() {
		img, err := s.Resolve("desk:1")
		done <- result{img, err}
	}()
	select {
	case r := <-done:
		return r.img, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("Resolve(desk:1) still blocked after 5s")
		return nil, nil
	}
}

func replaceWith(t *testing.T, path string, make func(string) error) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := make(path); err != nil {
		t.Fatal(err)
	}
}

// TestStoreFilesAreReadSafely is issue 17 item 5: every file the store
// reads is opened beneath the data root without following symlinks, must
// be a regular file (a fifo must not block the boot) and is read up to a
// cap per kind of file. The refusal is a *snapshot.StoreFileError naming
// the file and the cap, and matches snapshot.ErrCorrupt.
func TestStoreFilesAreReadSafely(t *testing.T) {
	t.Run("Valid", func(t *testing.T) {
		root, id, _ := diskStore(t)
		img, err := resolveWithin(t, New(filepath.Dir(filepath.Dir(filepath.Dir(root))), "var/lib/docker"))
		if err != nil || img.ID != id || img.Subvolume != "var/lib/docker/btrfs/subvolumes/c0ffee" {
			t.Fatalf("Resolve = %+v, %v", img, err)
		}
	})
	outside := filepath.Join(t.TempDir(), "outside")
	tests := []struct {
		name   string
		file   func(root, id, cacheID string) string
		make   func(string) error
		limit  int64
		reason string
	}{
		{"RepositoriesFifo", func(root, _, _ string) string { return filepath.Join(root, reposFile) },
			func(p string) error { return unix.Mkfifo(p, 0o600) }, maxRepositoriesSize, "not a regular file"},
		{"RepositoriesSymlinkOutOfRoot", func(root, _, _ string) string { return filepath.Join(root, reposFile) },
			func(p string) error {
				// The same, valid content: only where it is matters.
				data, err := os.ReadFile(filepath.Join(filepath.Dir(p), "repositories.json.orig"))
				if err != nil {
					return err
				}
				if err := os.WriteFile(outside, data, 0o644); err != nil {
					return err
				}
				return os.Symlink(outside, p)
			}, maxRepositoriesSize, "symbolic link"},
		{"RepositoriesTooLarge", func(root, _, _ string) string { return filepath.Join(root, reposFile) },
			func(p string) error {
				f, err := os.Create(p)
				if err != nil {
					return err
				}
				defer f.Close()
				return f.Truncate(maxRepositoriesSize + 1)
			}, maxRepositoriesSize, "larger than"},
		{"ConfigTooLarge", func(root, id, _ string) string { return filepath.Join(root, configPath(id)) },
			func(p string) error { return os.WriteFile(p, make([]byte, maxConfigSize+1), 0o644) }, maxConfigSize, "larger than"},
		{"ConfigFifo", func(root, id, _ string) string { return filepath.Join(root, configPath(id)) },
			func(p string) error { return unix.Mkfifo(p, 0o600) }, maxConfigSize, "not a regular file"},
		{"CacheIDDevZero", func(_, _, c string) string { return c },
			func(p string) error { return os.Symlink("/dev/zero", p) }, maxCacheIDSize, "symbolic link"},
		{"CacheIDTooLarge", func(_, _, c string) string { return c },
			func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("c", maxCacheIDSize+1)), 0o644) }, maxCacheIDSize, "larger than"},
		{"CacheIDUnderSymlinkedDir", func(_, _, c string) string { return filepath.Dir(c) },
			func(p string) error {
				real := p + ".real"
				if err := os.MkdirAll(real, 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(real, "cache-id"), []byte("c0ffee"), 0o644); err != nil {
					return err
				}
				return os.Symlink(filepath.Base(real), p)
			}, maxCacheIDSize, "symbolic link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, id, cacheID := diskStore(t)
			repos := filepath.Join(root, reposFile)
			if data, err := os.ReadFile(repos); err != nil || os.WriteFile(repos+".orig", data, 0o644) != nil {
				t.Fatal(err)
			}
			p := tt.file(root, id, cacheID)
			if tt.name == "CacheIDUnderSymlinkedDir" {
				if err := os.RemoveAll(p); err != nil {
					t.Fatal(err)
				}
				if err := tt.make(p); err != nil {
					t.Fatal(err)
				}
			} else {
				replaceWith(t, p, tt.make)
			}
			top := filepath.Dir(filepath.Dir(filepath.Dir(root)))
			img, err := resolveWithin(t, New(top, "var/lib/docker"))
			var sfe *snapshot.StoreFileError
			if !errors.As(err, &sfe) {
				t.Fatalf("Resolve = %+v, %v; want a *snapshot.StoreFileError", img, err)
			}
			if !errors.Is(err, snapshot.ErrCorrupt) || sfe.Limit != tt.limit || !strings.Contains(sfe.Reason, tt.reason) ||
				!strings.HasPrefix(sfe.Path, root+"/") {
				t.Errorf("error %#v: want ErrCorrupt, limit %d, reason containing %q, a path in %s", sfe, tt.limit, tt.reason, root)
			}
			if !strings.Contains(err.Error(), sfe.Path) || !strings.Contains(err.Error(), "bytes") {
				t.Errorf("message %q names neither the file nor the limit", err)
			}
		})
	}
}
