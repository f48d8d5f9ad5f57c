package snapshot_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
)

// TestDigestPinsResolveOnlyTheirImage is issue 4 §8's "a ref pinned by
// digest refuses to boot anything else", against a store a real dockerd
// wrote, with a real digest reference (the fixtures pull desk:2 by
// manifest digest from an in-process registry):
//
//   - name@sha256:<manifest digest> resolves to exactly the image Docker
//     recorded for that digest under that name; a tag beside the digest
//     is ignored, as Docker ignores it;
//   - sha256:<image ID> (and the bare 64-hex ID) resolves to exactly that
//     image, whose config must hash to that ID;
//   - anything else is refused with ErrNotFound, never resolved to a
//     nearby image: another digest under the same name, the same digest
//     under another name (Docker records digests per repository), an image
//     ID where a manifest digest belongs, an ID the store lacks.
func TestDigestPinsResolveOnlyTheirImage(t *testing.T) {
	testenv.RequireRoot(t, "dockerd", "docker")
	b := testenv.NewBtrfs(t, 1024, "dockroot-pins")
	d := testenv.StartDockerd(t, filepath.Join(b.Mnt, dockerPath))
	fx := d.BuildFixtures(t)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	store := snapshot.NewGraphDriverStore(b.Mnt, dockerPath)

	repo, digest, ok := strings.Cut(fx.Digested, "@")
	if !ok {
		t.Fatalf("fixture %q is not a digest reference", fx.Digested)
	}
	desk1, desk2 := fx.IDs[fx.Desk1], fx.IDs[fx.Desk2]
	// Another well-formed digest: the manifest digest with its last hex
	// digit changed.
	last := digest[len(digest)-1]
	other := digest[:len(digest)-1] + map[bool]string{true: "0", false: "1"}[last != '0']

	for _, tc := range []struct {
		name, ref, want string // want "" = refused
	}{
		{"manifest digest", fx.Digested, desk2},
		{"tag beside the digest is ignored", repo + ":whatever@" + digest, desk2},
		{"image ID", desk1, desk1},
		{"bare image ID", strings.TrimPrefix(desk2, "sha256:"), desk2},
		{"another digest under the same name", repo + "@" + other, ""},
		{"the tag of another image beside a wrong digest", repo + ":1@" + other, ""},
		{"the digest under another name", "desk@" + digest, ""},
		{"the digest under the tag's name with the registry dropped", "fixture/desk@" + digest, ""},
		{"an image ID where a manifest digest belongs", repo + "@" + desk2, ""},
		{"an image ID the store lacks", "sha256:" + strings.Repeat("ab", 32), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := store.Resolve(tc.ref)
			if tc.want == "" {
				if !errors.Is(err, snapshot.ErrNotFound) {
					t.Errorf("Resolve(%s) = %v, %v; want ErrNotFound", tc.ref, img, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%s): %v", tc.ref, err)
			}
			if img.ID != tc.want {
				t.Errorf("Resolve(%s) = image %s; want exactly %s", tc.ref, img.ID, tc.want)
			}
		})
	}
}
