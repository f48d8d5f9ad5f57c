package toplayer

import (
	"os"
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
		f.apply(t)
		// btrfs reports FIEMAP_EXTENT_SHARED for extents two files share.
		if out := testenv.Run(t, "filefrag", "-v", f.r("big")); !strings.Contains(out, "shared") {
			t.Errorf("destination extents are not shared with the source:\n%s", out)
		}
	})
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
