package podman

import (
	"path"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/dockroot/dockroot/snapshot"
)

// FuzzPodmanStore feeds arbitrary images.json and layers.json to the Podman
// store through an in-memory graph root (fstest.MapFS: this fuzzes the
// parsers and the lookup, not Podman's format, which podman_root_test.go
// proves against a real podman). Run it with
//
//	go test ./snapshot/podman -run '^$' -fuzz FuzzPodmanStore -fuzztime 20s
//
// Invariants: no panic; errors are errors, never half-filled images; a
// resolved image's subvolume is exactly <graph root>/btrfs/subvolumes/<one
// path element> and its chain ID names that element, whatever the files
// hold (a layer ID such as "../../etc" must never point outside); List
// agrees with Resolve.
func FuzzPodmanStore(f *testing.F) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	id := strings.Repeat("1", 64)
	for _, seed := range []struct{ images, layers, ref string }{
		{`[{"id":"` + id + `","names":["localhost/desk:1"],"layer":"` + b + `"}]`, `[{"id":"` + a + `"},{"id":"` + b + `","parent":"` + a + `"}]`, "desk:1"},
		{`[{"id":"` + id + `","names":["docker.io/library/desk:1"],"layer":"` + b + `"}]`, `[{"id":"` + b + `"}]`, "desk:1"},
		{`[{"id":"` + id + `","digest":"sha256:` + a + `","names":["localhost/desk:1"],"layer":"` + b + `"}]`, `[{"id":"` + b + `"}]`, "desk@sha256:" + a},
		{`[{"id":"` + id + `","names":["localhost/desk:1"],"layer":"../../etc"}]`, `[{"id":"../../etc"}]`, "desk:1"},
		{`[{"id":"` + id + `","names":["localhost/desk:1"],"layer":"` + b + `"}]`, `[{"id":"` + b + `","flags":{"incomplete":true}}]`, id[:12]},
		{`[{"id":"` + id + `","names":["localhost/desk:1"],"layer":"` + b + `"}]`, `[{"id":"` + b + `","parent":"` + b + `"}]`, "desk:1"},
		{`[{"id":"` + id + `","names":["Desk"]}]`, `[]`, "desk"},
		{`[null]`, `[null]`, "x"},
		{``, ``, ``},
		{`{}`, `{}`, "sha256:" + id},
	} {
		f.Add(seed.images, seed.layers, seed.ref)
	}
	f.Fuzz(func(t *testing.T, images, layers, ref string) {
		fsys := fstest.MapFS{
			imagesFile: {Data: []byte(images)},
			layersFile: {Data: []byte(layers)},
		}
		// Every layer ID that could be a subvolume gets one.
		for _, l := range []string{strings.Repeat("a", 64), strings.Repeat("b", 64)} {
			fsys[subvolumeDir+"/"+l+"/x"] = &fstest.MapFile{}
		}
		s := NewFS(fsys, gr, "/top/"+gr)
		img, err := s.Resolve(ref)
		if err != nil {
			if img != nil {
				t.Fatalf("Resolve returned both %+v and %v", img, err)
			}
			return
		}
		dir, elem := path.Split(img.Subvolume)
		if dir != gr+"/"+subvolumeDir+"/" || !isID(elem) || img.ChainID != "sha256:"+elem {
			t.Fatalf("Resolve(%q).Subvolume = %q, ChainID %q: not one layer subvolume", ref, img.Subvolume, img.ChainID)
		}
		if _, ok := snapshot.ParseImageID(img.ID); !ok || !strings.HasPrefix(img.ID, "sha256:") {
			t.Fatalf("Resolve(%q).ID = %q", ref, img.ID)
		}
		list, err := s.List()
		if err != nil {
			t.Fatalf("Resolve(%q) succeeded but List failed: %v", ref, err)
		}
		for _, l := range list {
			if l.ID == img.ID && l.Problem == "" && l.Subvolume != img.Subvolume {
				t.Fatalf("List gives %s subvolume %s, Resolve %s", l.ID, l.Subvolume, img.Subvolume)
			}
		}
	})
}
