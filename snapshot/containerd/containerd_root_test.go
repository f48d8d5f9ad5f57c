package containerd_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/containerd"
	"github.com/dockroot/dockroot/snapshot/stores"
	"github.com/dockroot/dockroot/snapshot/storetest"
)

const dockerPath = layout.DefaultDockerPath

// TestContainerdStoreRoot proves the containerd store against what a real
// Docker 29 (dockerd from moby v2.0.0-beta.24 with its own managed
// containerd 2.4.2, built once per machine) writes with
// {"storage-driver": "btrfs", "features": {"containerd-snapshotter": true}}
// on a loop btrfs: the shared suite, Docker agreeing on every ref form,
// an image pulled by digest, an image present but not unpacked, the
// bucket layout the unit tests imitate, and damaged copies. The daemon
// runs throughout, holding its databases' locks, so every read also
// proves the copy fallback. The fixtures start no container (see
// testenv.MakeDocker29Fixtures).
func TestContainerdStoreRoot(t *testing.T) {
	testenv.RequireRoot(t, "docker", "btrfs")
	if testing.Short() {
		t.Skip("root tier with a Docker 29 build: not in -short")
	}
	b := testenv.NewBtrfs(t, 2048, "dockroot-ctrd")
	d := testenv.StartDocker29(t, filepath.Join(b.Mnt, dockerPath))
	t.Logf("docker version: %s", d.Docker(t, "version", "--format", "{{.Server.Version}}"))
	fx := d.BuildDocker29Fixtures(t)
	paths := stores.Paths{Docker: dockerPath, ContainerdOptions: containerd.Options{LockTimeout: 200 * time.Millisecond}}
	store, err := stores.OpenPaths(layout.StoreContainerd, b.Mnt, paths)
	if err != nil || store.Name() != layout.StoreContainerd {
		t.Fatalf("stores.OpenPaths(containerd) = %v, %v", store, err)
	}
	sfx := suiteFixtures(b.Mnt, d, fx)
	t.Run("DockerAgrees", func(t *testing.T) {
		for ref, want := range sfx.Images {
			if got := d.Docker(t, "image", "inspect", "--format", "{{.Id}}", ref); got != want {
				t.Errorf("docker image inspect %s = %s, want %s", ref, got, want)
			}
		}
	})
	t.Run("Suite", func(t *testing.T) { storetest.Run(t, store, sfx) })
	t.Run("Auto", func(t *testing.T) {
		auto, err := stores.OpenPaths(layout.StoreAuto, b.Mnt, paths)
		if err != nil {
			t.Fatal(err)
		}
		img, err := auto.Resolve(fx.Desk2)
		if err != nil || img.ID != fx.IDs[fx.Desk2] || !strings.HasPrefix(img.Subvolume, dockerPath+"/containerd/daemon/") {
			t.Errorf("auto Resolve(%s) = %+v, %v", fx.Desk2, img, err)
		}
	})
	t.Run("DigestPullSharesSnapshot", func(t *testing.T) {
		// The image pulled by digest has a manifest of its own but
		// Desk2's layers: the same chain, so the same snapshot.
		pulled, err1 := store.Resolve(fx.Pulled)
		desk2, err2 := store.Resolve(fx.Desk2)
		if err1 != nil || err2 != nil || pulled.ID == desk2.ID || pulled.ChainID != desk2.ChainID || pulled.Subvolume != desk2.Subvolume {
			t.Errorf("Resolve(%s) = %+v, %v; Resolve(%s) = %+v, %v; want other IDs, one chain and subvolume", fx.Pulled, pulled, err1, fx.Desk2, desk2, err2)
		}
	})
	t.Run("NotUnpacked", func(t *testing.T) {
		_, err := store.Resolve(fx.Packed)
		var nu *containerd.NotUnpackedError
		if !errors.As(err, &nu) || !strings.Contains(err.Error(), "packed:1") {
			t.Errorf("Resolve(%s) = %v, want a NotUnpackedError naming it", fx.Packed, err)
		}
		// The running containerd holds the lock; the copy's answer is
		// the answer, not a failure to read past the lock.
		var le *containerd.LockedError
		if errors.As(err, &le) {
			t.Errorf("Resolve(%s) = %v, want the NotUnpackedError itself, not wrapped in a LockedError", fx.Packed, err)
		}
		t.Logf("%v", err)
		list, err := store.List()
		if err != nil {
			t.Fatal(err)
		}
		listed := false
		for _, img := range list {
			if r, err := snapshot.ParseRef(img.Ref); err == nil && r.Familiar() == fx.Packed {
				listed = true
				if img.Problem == "" || img.Subvolume != "" {
					t.Errorf("List: %s: Problem %q, Subvolume %q; want a problem and no subvolume", fx.Packed, img.Problem, img.Subvolume)
				}
			}
		}
		if !listed {
			t.Errorf("List lacks %s", fx.Packed)
		}
	})
	croot := filepath.Join(b.Mnt, dockerPath, "containerd/daemon")
	t.Run("RealLayout", func(t *testing.T) { testRealLayout(t, b.Mnt, croot, store, fx) })
	t.Run("DamagedCopies", func(t *testing.T) { testDamagedCopies(t, b.Mnt, croot, fx) })
}

func suiteFixtures(top string, d *testenv.Dockerd, fx testenv.Docker29Fixtures) storetest.Fixtures {
	desk1, desk2 := fx.IDs[fx.Desk1], fx.IDs[fx.Desk2]
	hex1 := strings.TrimPrefix(desk1, "sha256:")
	images := map[string]string{
		fx.Base:                          fx.IDs[fx.Base],
		"docker.io/" + fx.Base:           fx.IDs[fx.Base],
		fx.Desk1:                         desk1,
		"docker.io/library/desk:1":       desk1,
		"index.docker.io/library/desk:1": desk1,
		"library/desk:1":                 desk1,
		fx.Registry:                      desk1,
		fx.Desk2:                         desk2,
		fx.Latest:                        desk2,
		"desk:latest":                    desk2,
		fx.Digested:                      desk2,
		fx.Pulled:                        fx.IDs[fx.Pulled],
		desk1:                            desk1,
		hex1:                             desk1,
		hex1[:snapshot.MinIDPrefix]:      desk1,
		strings.TrimPrefix(desk2, "sha256:")[:16]: desk2,
	}
	var tags []string
	for _, tg := range fx.Tags {
		if tg != fx.Packed { // listed, but not bootable: checked on its own
			tags = append(tags, tg)
		}
	}
	return storetest.Fixtures{
		Top:        top,
		Images:     images,
		Tags:       tags,
		Missing:    "desk:3",
		ExportAdds: storetest.DockerExportAdds,
		Export: func(t testing.TB, ref string) []byte {
			id := d.Docker(t, "create", "--network", "none", ref)
			defer d.Docker(t, "rm", id)
			var out bytes.Buffer
			cmd := d.Command("export", id)
			cmd.Stdout = &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("docker export %s: %v", id, err)
			}
			return out.Bytes()
		},
	}
}

// copyDB copies a database the running containerd holds locked.
func copyDB(t *testing.T, src string) *bolt.DB {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	copyFile(t, src, dst)
	db, err := bolt.Open(dst, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func get(tx *bolt.Tx, path ...string) []byte {
	b := tx.Bucket([]byte(path[0]))
	for _, p := range path[1 : len(path)-1] {
		if b == nil {
			return nil
		}
		b = b.Bucket([]byte(p))
	}
	if b == nil {
		return nil
	}
	return b.Get([]byte(path[len(path)-1]))
}

// testRealLayout checks, in the real databases, every bucket, key and
// encoding that the unit tests' bbolt stores (helpers_test.go fakeStore)
// write, so that those tests test the format Docker 29 really writes.
func testRealLayout(t *testing.T, top, croot string, store snapshot.Store, fx testenv.Docker29Fixtures) {
	img, err := store.Resolve(fx.Desk1)
	if err != nil {
		t.Fatal(err)
	}
	meta := copyDB(t, filepath.Join(croot, "io.containerd.metadata.v1.bolt/meta.db"))
	var key string
	err = meta.View(func(tx *bolt.Tx) error {
		name := "docker.io/library/desk:1"
		if got := string(get(tx, "v1", "moby", "images", name, "target", "digest")); got != fx.IDs[fx.Desk1] {
			t.Errorf("v1/moby/images/%s/target/digest = %q, want the image ID %s", name, got, fx.IDs[fx.Desk1])
		}
		mt := string(get(tx, "v1", "moby", "images", name, "target", "mediatype"))
		t.Logf("%s: target media type %s", name, mt)
		if mt != "application/vnd.oci.image.index.v1+json" && mt != "application/vnd.oci.image.manifest.v1+json" {
			t.Errorf("target media type %q", mt)
		}
		if n, k := binary.Varint(get(tx, "v1", "moby", "images", name, "target", "size")); k <= 0 || n <= 0 {
			t.Errorf("target size is not a positive varint")
		}
		var created time.Time
		if err := created.UnmarshalBinary(get(tx, "v1", "moby", "images", name, "createdat")); err != nil || created.IsZero() {
			t.Errorf("createdat: %v", err)
		}
		// The config blob's label and the snapshot record.
		found := false
		tx.Bucket([]byte("v1")).Bucket([]byte("moby")).Bucket([]byte("content")).Bucket([]byte("blob")).ForEach(func(k, _ []byte) error {
			if string(get(tx, "v1", "moby", "content", "blob", string(k), "labels", "containerd.io/gc.ref.snapshot.btrfs")) == img.ChainID {
				found = true
			}
			return nil
		})
		if !found {
			t.Errorf("no content blob is labelled containerd.io/gc.ref.snapshot.btrfs=%s", img.ChainID)
		}
		key = string(get(tx, "v1", "moby", "snapshots", "btrfs", img.ChainID, "name"))
		if !regexp.MustCompile(`^moby/[0-9]+/` + regexp.QuoteMeta(img.ChainID) + `$`).MatchString(key) {
			t.Errorf("v1/moby/snapshots/btrfs/%s/name = %q, want moby/<n>/<chain ID>", img.ChainID, key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	snaps := copyDB(t, filepath.Join(croot, "io.containerd.snapshotter.v1.btrfs/metadata.db"))
	snaps.View(func(tx *bolt.Tx) error {
		id, n := binary.Uvarint(get(tx, "v1", "snapshots", key, "id"))
		kind := get(tx, "v1", "snapshots", key, "kind")
		if n <= 0 || len(kind) != 1 || kind[0] != 3 {
			t.Errorf("v1/snapshots/%s: id %d (%d bytes), kind %v; want a uvarint and 3 (committed)", key, id, n, kind)
		}
		if want := filepath.Join(dockerPath, "containerd/daemon/io.containerd.snapshotter.v1.btrfs/snapshots", strconv.FormatUint(id, 10)); img.Subvolume != want {
			t.Errorf("Subvolume = %s, want %s", img.Subvolume, want)
		}
		return nil
	})
	full := filepath.Join(top, img.Subvolume)
	out := testenv.Run(t, "btrfs", "property", "get", full, "ro")
	if !strings.Contains(out, "ro=true") {
		t.Errorf("btrfs property get %s ro: %s, want a read-only subvolume", full, out)
	}
	data, err := os.ReadFile(filepath.Join(full, "etc/fixture-image"))
	if err != nil || strings.TrimSpace(string(data)) != fx.Desk1 {
		t.Errorf("etc/fixture-image: %q, %v", data, err)
	}
}

// testDamagedCopies copies the real store's metadata (the databases and
// blobs; the snapshots are not needed to fail) beside it, damages one
// thing per case and checks the error: a truncated meta.db, a missing
// config blob.
func testDamagedCopies(t *testing.T, top, croot string, fx testenv.Docker29Fixtures) {
	for _, c := range []struct {
		name  string
		harm  func(t *testing.T, root string)
		check func(err error) bool
	}{
		{"truncated meta.db", func(t *testing.T, root string) {
			p := filepath.Join(root, "io.containerd.metadata.v1.bolt/meta.db")
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}, func(err error) bool { var de *containerd.DBError; return errors.As(err, &de) }},
		{"missing blobs", func(t *testing.T, root string) {
			os.RemoveAll(filepath.Join(root, "io.containerd.content.v1.content/blobs/sha256"))
			os.MkdirAll(filepath.Join(root, "io.containerd.content.v1.content/blobs/sha256"), 0o755)
		}, func(err error) bool { var be *containerd.BlobError; return errors.As(err, &be) && be.Missing }},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			rel := "copy-" + strings.ReplaceAll(c.name, " ", "-")
			root := filepath.Join(top, rel)
			for _, dir := range []string{"io.containerd.metadata.v1.bolt", "io.containerd.content.v1.content/blobs/sha256", "io.containerd.snapshotter.v1.btrfs/snapshots"} {
				os.MkdirAll(filepath.Join(root, dir), 0o755)
			}
			copyFile(t, filepath.Join(croot, "io.containerd.metadata.v1.bolt/meta.db"), filepath.Join(root, "io.containerd.metadata.v1.bolt/meta.db"))
			copyFile(t, filepath.Join(croot, "io.containerd.snapshotter.v1.btrfs/metadata.db"), filepath.Join(root, "io.containerd.snapshotter.v1.btrfs/metadata.db"))
			blobs, _ := os.ReadDir(filepath.Join(croot, "io.containerd.content.v1.content/blobs/sha256"))
			for _, bl := range blobs {
				copyFile(t, filepath.Join(croot, "io.containerd.content.v1.content/blobs/sha256", bl.Name()), filepath.Join(root, "io.containerd.content.v1.content/blobs/sha256", bl.Name()))
			}
			c.harm(t, root)
			_, err := containerd.New(top, rel, containerd.Options{}).Resolve(fx.Desk1)
			if !c.check(err) || !strings.Contains(err.Error(), root) {
				t.Errorf("Resolve(%s) in a copy with %s = %v (%T)", fx.Desk1, c.name, err, err)
			}
			t.Logf("%v", err)
		})
	}
}
