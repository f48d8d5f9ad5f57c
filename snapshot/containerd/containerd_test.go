package containerd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
)

var amd64 = Platform{OS: "linux", Architecture: "amd64"}

// fixture is a store with:
//   - desk:1, a single manifest, unpacked for btrfs;
//   - multi:1, an index for amd64 and arm64 (and an attestation), amd64
//     unpacked;
//   - arm:1, an index with arm64 only;
//   - overlay:1, unpacked for overlayfs only;
//   - busy:1, whose btrfs snapshot is still active.
type fixture struct {
	*fakeStore
	desk, multi, arm, over, busy descriptor
	deskChain, multiChain        string
	deskSub, multiSub            string
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{fakeStore: newFakeStore(t)}
	d1, d2 := diffID("base"), diffID("desk")
	var cfg descriptor
	f.desk, cfg = f.image("amd64", d1, d2)
	f.deskChain, _ = snapshot.ChainID([]string{d1, d2})
	f.name("docker.io/library/desk:1", f.desk)
	f.name("registry.example:5000/team/desk:1", f.desk)
	f.deskSub = f.unpack(cfg, snapshotterID, f.deskChain, kindCommitted, "desk")

	m64, c64 := f.image("amd64", diffID("multi-amd64"))
	marm, _ := f.image("arm64", diffID("multi-arm64"))
	m64.Platform, marm.Platform = &Platform{OS: "linux", Architecture: "amd64"}, &Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	att := f.blob(mediaOCIManifest, map[string]any{"schemaVersion": 2, "config": f.blob("application/vnd.in-toto+json", []byte("{}"))})
	att.Platform = &Platform{OS: "unknown", Architecture: "unknown"}
	f.multi = f.index(m64, marm, att)
	f.multiChain = diffID("multi-amd64")
	f.name("docker.io/library/multi:1", f.multi)
	f.multiSub = f.unpack(c64, snapshotterID, f.multiChain, kindCommitted, "multi")

	onlyArm, _ := f.image("arm64", diffID("arm"))
	onlyArm.Platform = &Platform{OS: "linux", Architecture: "arm64"}
	f.arm = f.index(onlyArm)
	f.name("docker.io/library/arm:1", f.arm)

	var ocfg descriptor
	f.over, ocfg = f.image("amd64", diffID("over"))
	f.name("docker.io/library/overlay:1", f.over)
	f.unpack(ocfg, "overlayfs", diffID("over"), kindCommitted, "")

	var bcfg descriptor
	f.busy, bcfg = f.image("amd64", diffID("busy"))
	f.name("docker.io/library/busy:1", f.busy)
	f.unpack(bcfg, snapshotterID, diffID("busy"), 2, "busy")

	// A dangling image: only its ID finds it.
	dang, dcfg := f.image("amd64", diffID("dangling"))
	f.name(danglingPrefix+dang.Digest, dang)
	f.unpack(dcfg, snapshotterID, diffID("dangling"), kindCommitted, "dangling")
	return f
}

func (f *fixture) store() snapshot.Store {
	return New(filepath.Dir(f.root), filepath.Base(f.root), Options{Platform: amd64, LockTimeout: 100 * time.Millisecond})
}

func TestResolveRefForms(t *testing.T) {
	f := newFixture(t)
	f.close()
	s := f.store()
	if s.Name() != layout.StoreContainerd {
		t.Errorf("Name() = %s", s.Name())
	}
	hex := strings.TrimPrefix(f.desk.Digest, "sha256:")
	cases := []struct{ ref, id, sub, norm string }{
		{"desk:1", f.desk.Digest, f.deskSub, "docker.io/library/desk:1"},
		{"docker.io/library/desk:1", f.desk.Digest, f.deskSub, "docker.io/library/desk:1"},
		{"registry.example:5000/team/desk:1", f.desk.Digest, f.deskSub, "registry.example:5000/team/desk:1"},
		{"desk@" + f.desk.Digest, f.desk.Digest, f.deskSub, "docker.io/library/desk@" + f.desk.Digest},
		{f.desk.Digest, f.desk.Digest, f.deskSub, f.desk.Digest},
		{hex, f.desk.Digest, f.deskSub, f.desk.Digest},
		{hex[:12], f.desk.Digest, f.deskSub, f.desk.Digest},
		{"multi:1", f.multi.Digest, f.multiSub, "docker.io/library/multi:1"},
		{"multi@" + f.multi.Digest, f.multi.Digest, f.multiSub, "docker.io/library/multi@" + f.multi.Digest},
	}
	for _, c := range cases {
		img, err := s.Resolve(c.ref)
		if err != nil {
			t.Errorf("Resolve(%q): %v", c.ref, err)
			continue
		}
		want := filepath.Base(f.root) + "/" + c.sub
		if img.ID != c.id || img.Subvolume != want || img.Ref != c.norm {
			t.Errorf("Resolve(%q) = ID %s, Subvolume %s, Ref %s; want %s, %s, %s", c.ref, img.ID, img.Subvolume, img.Ref, c.id, want, c.norm)
		}
		if img.ChainID == "" || len(img.DiffIDs) == 0 || img.Created.IsZero() {
			t.Errorf("Resolve(%q) = %+v: want chain ID, diff IDs and creation time", c.ref, img)
		}
	}
	img, _ := s.Resolve("desk:1")
	if img.ChainID != f.deskChain || strings.Join(img.Tags, ",") != "desk:1,registry.example:5000/team/desk:1" {
		t.Errorf("desk:1: ChainID %s (want %s), Tags %v", img.ChainID, f.deskChain, img.Tags)
	}
}

func TestResolveArm64PicksItsManifest(t *testing.T) {
	f := newFixture(t)
	f.close()
	s := New(filepath.Dir(f.root), filepath.Base(f.root), Options{Platform: Platform{OS: "linux", Architecture: "arm64"}})
	_, err := s.Resolve("multi:1")
	var nu *NotUnpackedError
	if !errors.As(err, &nu) || nu.ChainID != diffID("multi-arm64") {
		t.Errorf("Resolve(multi:1) on arm64 = %v, want NotUnpackedError for the arm64 chain", err)
	}
}

func TestResolveErrors(t *testing.T) {
	f := newFixture(t)
	f.close()
	s := f.store()
	cases := []struct {
		ref   string
		check func(error) bool
		words []string
	}{
		{"arm:1", func(err error) bool { var pe *PlatformError; return errors.As(err, &pe) && pe.Want == "linux/amd64" },
			[]string{"arm:1", "linux/amd64", "linux/arm64", "containerd image store"}},
		{"overlay:1", func(err error) bool {
			var nu *NotUnpackedError
			return errors.As(err, &nu) && len(nu.UnpackedFor) == 1 && nu.UnpackedFor[0] == "overlayfs"
		}, []string{"overlay:1", "not unpacked", "overlayfs"}},
		{"busy:1", func(err error) bool { var nu *NotUnpackedError; return errors.As(err, &nu) && nu.Reason != "" },
			[]string{"busy:1", "not committed"}},
		{"desk:9", func(err error) bool { return errors.Is(err, snapshot.ErrNotFound) },
			[]string{"desk:1", "multi:1", "registry.example:5000/team/desk:1"}},
		{"Desk:1", func(err error) bool { return err != nil && !errors.Is(err, snapshot.ErrNotFound) }, []string{"lowercase"}},
	}
	for _, c := range cases {
		_, err := s.Resolve(c.ref)
		if !c.check(err) {
			t.Errorf("Resolve(%q) = %v (%T)", c.ref, err, err)
			continue
		}
		for _, w := range c.words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Resolve(%q) = %q, lacks %q", c.ref, err, w)
			}
		}
		if strings.Contains(err.Error(), "moby-dangling") {
			t.Errorf("Resolve(%q) = %q names a dangling image", c.ref, err)
		}
	}
}

func TestList(t *testing.T) {
	f := newFixture(t)
	f.close()
	list, err := f.store().List()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]snapshot.Image{}
	var refs []string
	for _, img := range list {
		got[img.Ref] = img
		refs = append(refs, img.Ref)
	}
	want := "docker.io/library/arm:1 docker.io/library/busy:1 docker.io/library/desk:1 docker.io/library/multi:1 docker.io/library/overlay:1 registry.example:5000/team/desk:1"
	if strings.Join(refs, " ") != want {
		t.Errorf("List refs = %v, want %s", refs, want)
	}
	if img := got["docker.io/library/desk:1"]; img.Problem != "" || img.Subvolume == "" {
		t.Errorf("desk:1 = %+v, want bootable", img)
	}
	if img := got["docker.io/library/arm:1"]; img.Problem == "" || img.ID != f.arm.Digest {
		t.Errorf("arm:1 = %+v, want a problem and its ID", img)
	}
}

func TestMissingAndDamagedBlobs(t *testing.T) {
	f := newFixture(t)
	f.close()
	s := f.store()
	manifest := filepath.Join(f.root, contentBlobs, strings.TrimPrefix(f.desk.Digest, "sha256:"))
	if err := os.WriteFile(manifest, []byte(`{"schemaVersion":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Resolve("desk:1")
	var be *BlobError
	if !errors.As(err, &be) || be.Missing || !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), "hashes to") {
		t.Errorf("damaged manifest: %v", err)
	}
	os.Remove(manifest)
	_, err = s.Resolve("desk:1")
	if !errors.As(err, &be) || !be.Missing || be.What != "manifest" || be.Ref != "docker.io/library/desk:1" || !strings.Contains(err.Error(), manifest) {
		t.Errorf("missing manifest: %v", err)
	}
	os.Symlink("/etc/passwd", manifest)
	_, err = s.Resolve("desk:1")
	var sf *snapshot.StoreFileError
	if !errors.As(err, &sf) {
		t.Errorf("symlinked manifest: %v, want a StoreFileError", err)
	}
}

func TestDamagedDatabases(t *testing.T) {
	for _, c := range []struct {
		name string
		db   string
		mod  func(t *testing.T, path string)
	}{
		{"meta.db truncated", metaDB, func(t *testing.T, p string) { os.Truncate(p, 4096) }},
		{"meta.db truncated to nothing", metaDB, func(t *testing.T, p string) { os.Truncate(p, 0) }},
		{"meta.db garbage", metaDB, func(t *testing.T, p string) {
			os.WriteFile(p, []byte(strings.Repeat("not a bbolt file ", 2000)), 0o644)
		}},
		{"meta.db pages zeroed", metaDB, func(t *testing.T, p string) { zeroAfter(t, p, 2*4096) }},
		{"metadata.db truncated", snapshotsDB, func(t *testing.T, p string) { os.Truncate(p, 4096) }},
		{"metadata.db pages zeroed", snapshotsDB, func(t *testing.T, p string) { zeroAfter(t, p, 2*4096) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.close()
			p := filepath.Join(f.root, c.db)
			c.mod(t, p)
			_, err := f.store().Resolve("desk:1")
			var de *DBError
			if !errors.As(err, &de) || !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), p) {
				t.Errorf("Resolve on a damaged %s = %v (%T), want a DBError naming it", c.db, err, err)
			}
			t.Logf("%v", err)
		})
	}
}

// zeroAfter overwrites the file from off on with zeros (the meta pages
// stay valid, the tree's pages are gone).
func zeroAfter(t *testing.T, p string, off int64) {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".tmp", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, fi.Size()-off), off); err != nil {
		t.Fatal(err)
	}
}

// TestLockedDatabaseReadsACopy holds both databases open read-write, as a
// running containerd does, and resolves anyway (from a private copy),
// within the lock timeout and without changing the files.
func TestLockedDatabaseReadsACopy(t *testing.T) {
	f := newFixture(t) // still open: the locks are held
	before, _ := os.ReadFile(filepath.Join(f.root, metaDB))
	start := time.Now()
	img, err := f.store().Resolve("desk:1")
	if err != nil || img.ID != f.desk.Digest {
		t.Fatalf("Resolve with the databases locked = %+v, %v", img, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Resolve took %v", d)
	}
	// What the copy says is the answer: not a failure to read past the
	// lock (whose advice would be to stop Docker).
	_, err = f.store().Resolve("desk:9")
	var nf *snapshot.NotFoundError
	var le *LockedError
	if !errors.As(err, &nf) || errors.As(err, &le) || strings.Contains(err.Error(), "locked") {
		t.Errorf("Resolve(desk:9) with the databases locked = %v, want a plain *NotFoundError", err)
	}
	after, _ := os.ReadFile(filepath.Join(f.root, metaDB))
	if string(before) != string(after) {
		t.Errorf("meta.db changed")
	}
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	err := Detect(snapshot.StoreDirFS(dir), dir)
	var dr *snapshot.DataRootError
	if !errors.As(err, &dr) || !dr.Missing || dr.Kind != layout.StoreContainerd || !strings.Contains(err.Error(), "containerd root") {
		t.Errorf("Detect(empty) = %v", err)
	}
	os.MkdirAll(filepath.Join(dir, filepath.Dir(metaDB)), 0o755)
	db, err := bolt.Open(filepath.Join(dir, metaDB), 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	os.MkdirAll(filepath.Join(dir, "io.containerd.snapshotter.v1.overlayfs"), 0o755)
	err = Detect(snapshot.StoreDirFS(dir), dir)
	if !errors.As(err, &dr) || dr.Missing || !errors.Is(err, snapshot.ErrUnsupportedStore) || !strings.Contains(err.Error(), "overlayfs") {
		t.Errorf("Detect(overlayfs only) = %v", err)
	}
	os.MkdirAll(filepath.Join(dir, snapshotsRoot), 0o755)
	if err := Detect(snapshot.StoreDirFS(dir), dir); err != nil {
		t.Errorf("Detect(btrfs) = %v", err)
	}
	// An empty store: no images bucket yet.
	_, err = New(filepath.Dir(dir), filepath.Base(dir), Options{}).Resolve("desk")
	var nf *snapshot.NotFoundError
	if !errors.As(err, &nf) || len(nf.Available) != 0 {
		t.Errorf("Resolve in an empty store = %v", err)
	}
}

func TestPlatformMatches(t *testing.T) {
	for _, c := range []struct {
		want Platform
		m    *Platform
		ok   bool
	}{
		{amd64, &Platform{OS: "linux", Architecture: "amd64"}, true},
		{amd64, &Platform{OS: "linux", Architecture: "amd64", Variant: "v2"}, true},
		{amd64, &Platform{OS: "linux", Architecture: "arm64"}, false},
		{amd64, &Platform{OS: "windows", Architecture: "amd64"}, false},
		{amd64, nil, false},
		{Platform{OS: "linux", Architecture: "arm64"}, &Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, true},
		{Platform{OS: "linux", Architecture: "arm64"}, &Platform{OS: "linux", Architecture: "arm64"}, true},
		{Platform{OS: "linux", Architecture: "arm64"}, &Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, false},
	} {
		if got := c.want.matches(c.m); got != c.ok {
			t.Errorf("%v.matches(%v) = %v, want %v", c.want, c.m, got, c.ok)
		}
	}
}
