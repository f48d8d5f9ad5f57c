// Package storetest is the behavioural test suite every snapshot.Store must
// pass. A store's root-tier test builds real images with a real engine,
// describes them in a Fixtures value and calls Run; the suite then checks
// what dockroot relies on at boot: every reference form resolves to the
// right image, the subvolume holds exactly the image's files, listing and
// not-found errors name every tag, and results are deterministic.
//
// Modelled on containerd's core/snapshots/testsuite: adding a store means
// passing this suite, not writing new assertions.
//
// It imports only snapshot (and testing helpers): a store package's tests
// import it, never the other way round.
package storetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/dockroot/dockroot/snapshot"
)

// Fixtures describes the images in the store under test.
type Fixtures struct {
	// Top is where the btrfs top level is mounted; Image.Subvolume is
	// relative to it.
	Top string
	// Images maps every reference the store must resolve, in any form a
	// user may type (tag, full name, image ID, ID prefix, digest), to the
	// image ID it names.
	Images map[string]string
	// Tags is every tag the engine itself lists, as it shows them: the
	// familiar form for Docker ("desk:1"), the full name for Podman
	// ("localhost/desk:1").
	Tags []string
	// NoLayers is a tagged image without filesystem layers; "" if none.
	NoLayers string
	// Missing is a reference to an image that does not exist.
	Missing string
	// Export returns the image's filesystem as the engine exports it (a tar
	// stream, e.g. `docker export` of a created container); nil skips the
	// content comparison.
	Export func(t testing.TB, ref string) []byte
	// ExportAdds lists paths the engine's export adds that are not part of
	// the image (whole subtrees); see DockerExportAdds and
	// PodmanExportAdds.
	ExportAdds []string
}

// DockerExportAdds are the paths `docker export` adds to a container's
// filesystem (Docker 20.10, verified): the init layer's mount points and
// placeholder files, and /.dockerenv. They are ignored on both sides.
var DockerExportAdds = []string{
	".dockerenv", "dev", "proc", "sys",
	"etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab",
}

// PodmanExportAdds are the paths `podman export` of a created container
// adds to the image's filesystem: Podman 4.3.1 with --network none adds
// dev, proc, run, sys and etc/hostname (verified); with a network it also
// writes etc/hosts and etc/resolv.conf. They are ignored on both sides.
var PodmanExportAdds = []string{
	"dev", "proc", "sys", "run",
	"etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab",
}

// Run runs the suite against s. Subtests share s and fx, so a store must
// not change anything on Resolve or List.
func Run(t *testing.T, s snapshot.Store, fx Fixtures) {
	t.Run("ResolveEveryRefForm", func(t *testing.T) { testResolve(t, s, fx) })
	t.Run("SameImageSameSubvolume", func(t *testing.T) { testSameImage(t, s, fx) })
	t.Run("Deterministic", func(t *testing.T) { testDeterministic(t, s, fx) })
	t.Run("List", func(t *testing.T) { testList(t, s, fx) })
	t.Run("NotFoundListsTags", func(t *testing.T) { testNotFound(t, s, fx) })
	t.Run("InvalidRef", func(t *testing.T) { testInvalid(t, s) })
	if fx.NoLayers != "" {
		t.Run("NoLayers", func(t *testing.T) { testNoLayers(t, s, fx) })
	}
	if fx.Export != nil {
		t.Run("ContentEqualsExport", func(t *testing.T) { testContent(t, s, fx) })
	}
}

func sortedRefs(m map[string]string) []string {
	refs := make([]string, 0, len(m))
	for r := range m {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	return refs
}

func testResolve(t *testing.T, s snapshot.Store, fx Fixtures) {
	for _, ref := range sortedRefs(fx.Images) {
		want := fx.Images[ref]
		img, err := s.Resolve(ref)
		if err != nil {
			t.Errorf("Resolve(%q): %v", ref, err)
			continue
		}
		if img.ID != want {
			t.Errorf("Resolve(%q).ID = %s, want %s", ref, img.ID, want)
		}
		if len(img.DiffIDs) == 0 || img.ChainID == "" {
			t.Errorf("Resolve(%q): DiffIDs %v, ChainID %q; want the image's layers", ref, img.DiffIDs, img.ChainID)
		}
		sub := img.Subvolume
		if sub == "" || path.IsAbs(sub) || path.Clean(sub) != sub || strings.HasPrefix(sub, "..") {
			t.Errorf("Resolve(%q).Subvolume = %q, want a clean path relative to the top level", ref, sub)
			continue
		}
		fi, err := os.Lstat(filepath.Join(fx.Top, sub))
		if err != nil || !fi.IsDir() {
			t.Errorf("Resolve(%q).Subvolume %s: not a directory under %s: %v", ref, sub, fx.Top, err)
		}
		// A tag of the store must be among its image's tags.
		if r, err := snapshot.ParseRef(ref); err == nil && contains(fx.Tags, r.Familiar()) && !contains(img.Tags, r.Familiar()) {
			t.Errorf("Resolve(%q).Tags = %v, want it to contain %q", ref, img.Tags, r.Familiar())
		}
	}
}

func testSameImage(t *testing.T, s snapshot.Store, fx Fixtures) {
	byID := map[string]string{} // image ID -> subvolume
	for _, ref := range sortedRefs(fx.Images) {
		img, err := s.Resolve(ref)
		if err != nil {
			continue // reported by ResolveEveryRefForm
		}
		if prev, ok := byID[img.ID]; ok && prev != img.Subvolume {
			t.Errorf("image %s: Resolve(%q) gives subvolume %s, another reference gave %s", img.ID, ref, img.Subvolume, prev)
		}
		byID[img.ID] = img.Subvolume
	}
}

func testDeterministic(t *testing.T, s snapshot.Store, fx Fixtures) {
	for _, ref := range sortedRefs(fx.Images) {
		a, errA := s.Resolve(ref)
		b, errB := s.Resolve(ref)
		if !reflect.DeepEqual(a, b) || fmt.Sprint(errA) != fmt.Sprint(errB) {
			t.Errorf("Resolve(%q) twice: %+v, %v then %+v, %v", ref, a, errA, b, errB)
		}
	}
	a, errA := s.List()
	b, errB := s.List()
	if !reflect.DeepEqual(a, b) || fmt.Sprint(errA) != fmt.Sprint(errB) {
		t.Errorf("List twice differs: %v / %v", errA, errB)
	}
}

func testList(t *testing.T, s snapshot.Store, fx Fixtures) {
	list, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !sort.SliceIsSorted(list, func(i, j int) bool { return list[i].Ref < list[j].Ref }) {
		t.Errorf("List is not sorted by Ref")
	}
	listed := map[string]snapshot.Image{}
	for _, img := range list {
		r, err := snapshot.ParseRef(img.Ref)
		if err != nil || r.String() != img.Ref {
			t.Errorf("List entry Ref %q is not a normalised reference (%v)", img.Ref, err)
			continue
		}
		// Docker shows the familiar form, Podman the full name: both
		// find the entry.
		listed[r.Familiar()] = img
		listed[img.Ref] = img
	}
	for _, tag := range fx.Tags {
		img, ok := listed[tag]
		if !ok {
			t.Errorf("List lacks tag %s", tag)
			continue
		}
		if want, ok := fx.Images[tag]; ok && img.ID != want {
			t.Errorf("List: %s has ID %s, want %s", tag, img.ID, want)
		}
		if img.Created.IsZero() {
			t.Errorf("List: %s has no creation time", tag)
		}
		if tag == fx.NoLayers {
			if img.Problem == "" || img.Subvolume != "" {
				t.Errorf("List: no-layer image %s: Problem %q, Subvolume %q; want a problem and no subvolume", tag, img.Problem, img.Subvolume)
			}
		} else if img.Problem != "" || img.Subvolume == "" {
			t.Errorf("List: %s: Problem %q, Subvolume %q; want bootable", tag, img.Problem, img.Subvolume)
		}
	}
}

func testNotFound(t *testing.T, s snapshot.Store, fx Fixtures) {
	for _, ref := range []string{fx.Missing, "dockroot-no-such-image", "sha256:" + strings.Repeat("0", 64)} {
		if ref == "" {
			continue
		}
		_, err := s.Resolve(ref)
		var nf *snapshot.NotFoundError
		if !errors.As(err, &nf) || !errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("Resolve(%q) = %v, want *NotFoundError", ref, err)
			continue
		}
		if !sort.StringsAreSorted(nf.Available) {
			t.Errorf("NotFoundError.Available not sorted: %v", nf.Available)
		}
		for _, tag := range fx.Tags {
			if !contains(nf.Available, tag) {
				t.Errorf("Resolve(%q): Available %v lacks %s", ref, nf.Available, tag)
			}
			if !strings.Contains(err.Error(), tag) {
				t.Errorf("Resolve(%q): message %q does not name %s", ref, err, tag)
			}
		}
		// A store names what it knows; where the reference was given (a
		// kernel parameter, a CLI argument) the caller adds what to do.
		if strings.Contains(err.Error(), "docker_image=") || strings.Contains(err.Error(), "--") {
			t.Errorf("Resolve(%q): message %q carries advice for one caller", ref, err)
		}
	}
}

func testInvalid(t *testing.T, s snapshot.Store) {
	for _, ref := range []string{"Desk:1", "desk@sha256:abc", "a..b"} {
		_, err := s.Resolve(ref)
		if err == nil || errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("Resolve(%q) = %v, want a parse error", ref, err)
		}
	}
}

func testNoLayers(t *testing.T, s snapshot.Store, fx Fixtures) {
	img, err := s.Resolve(fx.NoLayers)
	if !errors.Is(err, snapshot.ErrNoLayers) {
		t.Fatalf("Resolve(%q) = %+v, %v; want ErrNoLayers", fx.NoLayers, img, err)
	}
	if !strings.Contains(err.Error(), fx.NoLayers) {
		t.Errorf("error %q does not name the image %s", err, fx.NoLayers)
	}
}

func testContent(t *testing.T, s snapshot.Store, fx Fixtures) {
	done := map[string]bool{} // image ID
	for _, ref := range sortedRefs(fx.Images) {
		img, err := s.Resolve(ref)
		if err != nil || done[img.ID] {
			continue
		}
		done[img.ID] = true
		t.Run(strings.ReplaceAll(ref, "/", "_"), func(t *testing.T) {
			want, err := treeFromTar(fx.Export(t, ref), fx.ExportAdds)
			if err != nil {
				t.Fatalf("export of %s: %v", ref, err)
			}
			got, err := treeFromDir(filepath.Join(fx.Top, img.Subvolume), fx.ExportAdds)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) < 2 {
				t.Fatalf("export of %s has %d entries; the comparison would prove nothing", ref, len(want))
			}
			diffTrees(t, got, want)
		})
	}
}

// entry is what the comparison checks of one file: type, permission bits
// with setuid/setgid/sticky, owner, and content hash or link target.
type entry struct {
	kind     byte // 'f', 'd', 'l', 'o' (other)
	mode     uint32
	uid, gid int
	content  string
}

func (e entry) String() string {
	return fmt.Sprintf("%c %04o %d:%d %s", e.kind, e.mode, e.uid, e.gid, e.content)
}

func ignored(name string, adds []string) bool {
	for _, a := range adds {
		if name == a || strings.HasPrefix(name, a+"/") {
			return true
		}
	}
	return false
}

func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func treeFromTar(data []byte, adds []string) (map[string]entry, error) {
	tree := map[string]entry{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tree, nil
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(path.Clean(strings.TrimPrefix(h.Name, "./")), "/")
		if name == "." || ignored(name, adds) {
			continue
		}
		e := entry{mode: uint32(h.Mode) & 0o7777, uid: h.Uid, gid: h.Gid}
		switch h.Typeflag {
		case tar.TypeReg:
			body, err := io.ReadAll(tr)
			if err != nil {
				return nil, err
			}
			e.kind, e.content = 'f', hashOf(body)
		case tar.TypeLink: // a hard link has its target's content
			target, ok := tree[strings.TrimSuffix(path.Clean(h.Linkname), "/")]
			if !ok {
				return nil, fmt.Errorf("hard link %s to unknown %s", name, h.Linkname)
			}
			e.kind, e.content = 'f', target.content
		case tar.TypeDir:
			e.kind = 'd'
		case tar.TypeSymlink:
			e.kind, e.content = 'l', h.Linkname
		default:
			e.kind = 'o'
		}
		tree[name] = e
	}
}

func treeFromDir(root string, adds []string) (map[string]entry, error) {
	tree := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if ignored(rel, adds) {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: st.Mode & 0o7777, uid: int(st.Uid), gid: int(st.Gid)}
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.kind, e.content = 'f', hashOf(data)
		case fi.IsDir():
			e.kind = 'd'
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.content, err = os.Readlink(p); err != nil {
				return err
			}
			e.kind = 'l'
		default:
			e.kind = 'o'
		}
		tree[rel] = e
		return nil
	})
	return tree, err
}

func diffTrees(t *testing.T, got, want map[string]entry) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	bad := 0
	for _, n := range names {
		g, gok := got[n]
		w, wok := want[n]
		switch {
		case !gok:
			t.Errorf("subvolume lacks %s (export: %v)", n, w)
		case !wok:
			t.Errorf("subvolume has %s (%v), export does not", n, g)
		case g != w:
			t.Errorf("%s: subvolume %v, export %v", n, g, w)
		default:
			continue
		}
		if bad++; bad > 20 {
			t.Fatalf("too many differences")
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
