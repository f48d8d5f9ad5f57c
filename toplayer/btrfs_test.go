package toplayer

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/testenv"
)

// TestApplyBtrfs is the root tier: the whole matrix with the new root and
// the top layer on one real btrfs filesystem, where data goes through the
// FICLONE (reflink) path instead of copy_file_range.
func TestApplyBtrfs(t *testing.T) {
	testenv.RequireRoot(t)
	fs := testenv.NewBtrfs(t, 256, "")
	runMatrix(t, func(t *testing.T) string { return mustTempIn(t, fs.Mnt) })

	t.Run("data is reflinked, not copied", func(t *testing.T) {
		testenv.RequireRoot(t, "filefrag")
		f := newFixture(t, mustTempIn(t, fs.Mnt))
		mustFile(t, f.s("big"), strings.Repeat("reflink me ", 100000), 0o644)
		mustFile(t, f.s("etc/hostname"), "inline\n", 0o644) // an inline extent
		sum := f.apply(t)
		if sum.Bytes != 100000*int64(len("reflink me "))+int64(len("inline\n")) || sum.Copied != 0 {
			t.Errorf("summary %s: want every byte reflinked, none copied", sum)
		}
		// btrfs reports FIEMAP_EXTENT_SHARED for extents two files share.
		if out := testenv.Run(t, "filefrag", "-v", f.r("big")); !strings.Contains(out, "shared") {
			t.Errorf("destination extents are not shared with the source:\n%s", out)
		}
	})
}

// TestApplyAcrossFilesystems is the root tier for a top layer on another
// filesystem (tmpfs here, as toplayer= on a separate partition would be):
// FICLONE and copy_file_range both refuse, so data goes through sendfile
// (large files and segments) and read/write (small ones), and holes must
// stay holes.
func TestApplyAcrossFilesystems(t *testing.T) {
	testenv.RequireRoot(t)
	fs := testenv.NewBtrfs(t, 256, "")
	src := t.TempDir()
	testenv.Run(t, "mount", "-t", "tmpfs", "-o", "size=64m", "toplayer-test", src)
	t.Cleanup(func() { testenv.Unmount(t, src) })
	root := mustTempIn(t, fs.Mnt)

	big := make([]byte, 5<<20+17)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	segment := big[:300<<10]
	mustFile(t, filepath.Join(src, "big"), string(big), 0o644)
	mustFile(t, filepath.Join(src, "small"), "small file\n", 0o600)
	sp, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.WriteAt(segment, 8<<20); err != nil {
		t.Fatal(err)
	}
	if err := sp.Truncate(16 << 20); err != nil {
		t.Fatal(err)
	}
	sp.Close()

	sum, err := Apply(root, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"big", "small", "sparse"} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: content differs (err %v, %d bytes, want %d)", name, err, len(got), len(want))
		}
	}
	assertMode(t, filepath.Join(root, "small"), 0o600)
	if st := lstat(t, filepath.Join(root, "sparse")); st.Blocks*512 >= 4<<20 {
		t.Errorf("sparse: %d bytes allocated for %d bytes of data; holes were filled", st.Blocks*512, len(segment))
	}
	if want := int64(len(big) + len("small file\n") + 16<<20); sum.Bytes != want || sum.Copied != want {
		t.Errorf("Bytes = %d, Copied = %d, want %d for both (nothing can be reflinked across filesystems)", sum.Bytes, sum.Copied, want)
	}
}

func mustTempIn(t *testing.T, parent string) string {
	t.Helper()
	dir, err := os.MkdirTemp(parent, "case")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
