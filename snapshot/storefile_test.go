package snapshot

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadStoreFile checks the opener every store reads its files through,
// with openat2 and with the per-component O_NOFOLLOW walk used where
// openat2 is missing (ENOSYS: kernels before 5.6): a regular file within
// the limit is read; a symlink (to /dev/zero, or a directory above the
// file), a fifo and an oversized file are a *StoreFileError naming the file
// and the limit, matching ErrCorrupt; a missing file matches
// fs.ErrNotExist.
func TestReadStoreFile(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "dir"), 0o755))
	must(os.WriteFile(filepath.Join(root, "dir/ok.json"), []byte(`{"ok":1}`), 0o600))
	must(os.WriteFile(filepath.Join(root, "big"), make([]byte, 65), 0o600))
	must(os.Symlink("/dev/zero", filepath.Join(root, "zero")))
	must(os.WriteFile(filepath.Join(outside, "ok.json"), []byte(`{}`), 0o600))
	must(os.Symlink(outside, filepath.Join(root, "linkdir")))
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))

	tests := []struct {
		name, file, reason string
		missing            bool
	}{
		{name: "Regular", file: "dir/ok.json"},
		{name: "Missing", file: "dir/none.json", missing: true},
		{name: "TooLarge", file: "big", reason: "larger than"},
		{name: "SymlinkToDevZero", file: "zero", reason: "symbolic link"},
		{name: "UnderSymlinkedDir", file: "linkdir/ok.json", reason: "symbolic link"},
		{name: "Fifo", file: "fifo", reason: "not a regular file"},
	}
	for _, fallback := range []bool{false, true} {
		mode := "openat2"
		if fallback {
			mode = "fallback"
		}
		t.Run(mode, func(t *testing.T) {
			if fallback {
				saved := openat2
				openat2 = func(int, string, *unix.OpenHow) (int, error) { return -1, unix.ENOSYS }
				t.Cleanup(func() { openat2 = saved })
			}
			fsys := StoreDirFS(root)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					full := filepath.Join(root, tt.file)
					data, err := ReadStoreFile(fsys, tt.file, full, 64)
					switch {
					case tt.missing:
						if !errors.Is(err, fs.ErrNotExist) {
							t.Fatalf("ReadStoreFile = %q, %v; want fs.ErrNotExist", data, err)
						}
					case tt.reason == "":
						if err != nil || string(data) != `{"ok":1}` {
							t.Fatalf("ReadStoreFile = %q, %v", data, err)
						}
					default:
						var sfe *StoreFileError
						if !errors.As(err, &sfe) || !errors.Is(err, ErrCorrupt) {
							t.Fatalf("ReadStoreFile = %q, %v; want a *StoreFileError", data, err)
						}
						if sfe.Path != full || sfe.Limit != 64 || !strings.Contains(sfe.Reason, tt.reason) {
							t.Errorf("error %#v: want path %s, limit 64, reason containing %q", sfe, full, tt.reason)
						}
						if !strings.Contains(err.Error(), full) || !strings.Contains(err.Error(), "64 bytes") {
							t.Errorf("message %q names neither the file nor the limit", err)
						}
					}
				})
			}
		})
	}
}
