package hook

import (
	"os"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/snapshot"
)

// TestCreateLayerPassesLastGood: the rw-layer step tells rwlayer which
// image was last marked good, so a commit that displaces the layer of a
// failing trial keeps NAME.prev.1 as the last good boot's layer (issue 17
// item 10). Without a last good image, or with counting off, it passes
// none and the layers rotate as always.
func TestCreateLayerPassesLastGood(t *testing.T) {
	good := "sha256:" + strings.Repeat("9", 64)
	for _, tc := range []struct {
		name, params string
		marked       bool
		want         string
	}{
		{"a trial with a last good image", "dockroot.tries=3", true, good},
		{"no image marked good yet", "dockroot.tries=3", false, ""},
		{"counting off", "dockroot.tries=0", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, withParams(tc.params))
			mustDo(t, os.MkdirAll(w.env.TopDir, 0o755))
			if tc.marked {
				if _, err := bootstate.MarkGood(w.env.TopDir, bootstate.Image{ID: good, Ref: "docker.io/library/good:1"}); err != nil {
					t.Fatal(err)
				}
			}
			if err := Boot(w.env); err != nil {
				t.Fatalf("Boot: %v\n%s", err, w.log)
			}
			if w.layers.LastGood != tc.want || w.layers.Image != w.image.ID {
				t.Errorf("rwlayer.Layers{Image: %q, LastGood: %q}; want LastGood %q", w.layers.Image, w.layers.LastGood, tc.want)
			}
		})
	}
	t.Run("the fallback to the last good image", func(t *testing.T) {
		w := newWorld(t, withParams("dockroot.tries=1"))
		w.images[good] = &snapshot.Image{Ref: good, ID: good, ChainID: "sha256:" + strings.Repeat("8", 64), Subvolume: "var/lib/docker/btrfs/subvolumes/good"}
		mustDo(t, os.MkdirAll(w.env.TopDir, 0o755))
		if _, err := bootstate.MarkGood(w.env.TopDir, bootstate.Image{ID: good, Ref: "docker.io/library/good:1"}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if err := Boot(w.env); err != nil {
				t.Fatalf("Boot: %v\n%s", err, w.log)
			}
		}
		if !w.record.BootCount.FellBack || w.layers.Image != good || w.layers.LastGood != good {
			t.Errorf("fallback boot: %+v; rwlayer.Layers{Image: %q, LastGood: %q}; want both %s", w.record.BootCount, w.layers.Image, w.layers.LastGood, good)
		}
	})
}
