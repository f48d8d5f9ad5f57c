package graphdriver_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
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
//   - name@sha256:<image ID> resolves to exactly that image when the
//     repository name has a tag or digest reference for it;
//   - anything else is refused with ErrNotFound, never resolved to a
//     nearby image: another digest under the same name, the same digest
//     under another name (Docker records digests per repository), the ID
//     of an image the named repository does not hold (not even its base
//     image), an ID the store lacks. The refusal lists what the named
//     repository's references point to.
func TestDigestPinsResolveOnlyTheirImage(t *testing.T) {
	testenv.RequireRoot(t, "dockerd", "docker")
	b := testenv.NewBtrfs(t, 1024, "dockroot-pins")
	d := testenv.StartDockerd(t, filepath.Join(b.Mnt, dockerPath))
	fx := d.BuildFixtures(t)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	store := graphdriver.New(b.Mnt, dockerPath)

	repo, digest, ok := strings.Cut(fx.Digested, "@")
	if !ok {
		t.Fatalf("fixture %q is not a digest reference", fx.Digested)
	}
	desk1, desk2, base := fx.IDs[fx.Desk1], fx.IDs[fx.Desk2], fx.IDs[fx.Base]
	// Another well-formed digest: the manifest digest with its last hex
	// digit changed.
	last := digest[len(digest)-1]
	other := digest[:len(digest)-1] + map[bool]string{true: "0", false: "1"}[last != '0']
	registry, _, _ := strings.Cut(fx.Registry, ":1") // registry.example:5000/team/desk

	for _, tc := range []struct {
		name, ref, want string // want "" = refused
		msg             string // for a refusal: a part of the message
	}{
		{"manifest digest", fx.Digested, desk2, ""},
		{"tag beside the digest is ignored", repo + ":whatever@" + digest, desk2, ""},
		{"image ID", desk1, desk1, ""},
		{"bare image ID", strings.TrimPrefix(desk2, "sha256:"), desk2, ""},
		{"image ID of an image the repository tags", "desk@" + desk1, desk1, ""},
		{"image ID of another image the repository tags", "desk@" + desk2, desk2, ""},
		{"image ID under a registry-style name that tags it", registry + "@" + desk1, desk1, ""},
		{"image ID where the repository holds only a digest reference to it", repo + "@" + desk2, desk2, ""},
		{"tag beside an image-ID pin is ignored", "desk:2@" + desk1, desk1, ""},
		{"another digest under the same name", repo + "@" + other, "", repo + " holds: " + repo + "@" + digest + " -> image " + strings.TrimPrefix(desk2, "sha256:")[:12]},
		{"the tag of another image beside a wrong digest", repo + ":1@" + other, "", "nor the ID of an image"},
		{"a wrong digest under a tagged name", "desk@" + other, "", "desk holds: desk:1 -> image "},
		{"the digest under another name", "desk@" + digest, "", "is neither a manifest digest Docker recorded for desk"},
		{"the digest under the tag's name with the registry dropped", "fixture/desk@" + digest, "", "the store has no repository fixture/desk"},
		{"image ID of another repository's image", repo + "@" + desk1, "", "fixture/desk holds: "},
		{"image ID of another repository's image under a registry-style name", registry + "@" + desk2, "", "team/desk holds: registry.example:5000/team/desk:1 -> image "},
		{"image ID of the base image under a name built from it", "desk@" + base, "", "desk holds: "},
		{"an image ID the store lacks", "sha256:" + strings.Repeat("ab", 32), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := store.Resolve(tc.ref)
			if tc.want == "" {
				if !errors.Is(err, snapshot.ErrNotFound) {
					t.Fatalf("Resolve(%s) = %v, %v; want ErrNotFound", tc.ref, img, err)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("Resolve(%s): %v\nwant a message containing %q", tc.ref, err, tc.msg)
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
