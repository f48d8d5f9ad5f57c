package containerd

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fakeStore writes a containerd root in the exact layout containerd 2.4
// writes (the package comment's chain), which TestContainerdStoreRoot
// checks against a real Docker 29: meta.db and the snapshotter's
// metadata.db made with bbolt itself, content blobs, and plain directories
// for the snapshot subvolumes.
type fakeStore struct {
	t    testing.TB
	root string
	meta *bolt.DB
	snap *bolt.DB
	next uint64
}

func newFakeStore(t testing.TB) *fakeStore {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{contentBlobs, snapshotsDir, filepath.Dir(metaDB)} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := &fakeStore{t: t, root: root, next: 1}
	var err error
	if f.meta, err = bolt.Open(filepath.Join(root, metaDB), 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if f.snap, err = bolt.Open(filepath.Join(root, snapshotsDB), 0o644, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	return f
}

// close releases the databases (their locks), as a stopped containerd.
func (f *fakeStore) close() {
	if f.meta != nil {
		f.meta.Close()
		f.snap.Close()
		f.meta, f.snap = nil, nil
	}
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// blob writes data into the content store and returns its descriptor.
func (f *fakeStore) blob(mediaType string, v any) descriptor {
	data, ok := v.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(v); err != nil {
			f.t.Fatal(err)
		}
	}
	d := digestOf(data)
	if err := os.WriteFile(filepath.Join(f.root, contentBlobs, d[len("sha256:"):]), data, 0o644); err != nil {
		f.t.Fatal(err)
	}
	return descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

// image builds a one-platform image with the given diff IDs: config and
// manifest blobs; it returns the manifest and config descriptors.
func (f *fakeStore) image(arch string, diffIDs ...string) (manifest, config descriptor) {
	config = f.blob("application/vnd.oci.image.config.v1+json", map[string]any{
		"created": "2026-01-02T03:04:05Z", "os": "linux", "architecture": arch,
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	manifest = f.blob(mediaOCIManifest, map[string]any{
		"schemaVersion": 2, "mediaType": mediaOCIManifest, "config": config,
		"layers": []any{},
	})
	return manifest, config
}

// index builds an index over manifests, each with its platform.
func (f *fakeStore) index(manifests ...descriptor) descriptor {
	return f.blob(mediaOCIIndex, map[string]any{"schemaVersion": 2, "mediaType": mediaOCIIndex, "manifests": manifests})
}

func putAll(t testing.TB, b *bolt.Bucket, kv map[string][]byte) {
	t.Helper()
	for k, v := range kv {
		if err := b.Put([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
}

func mkBuckets(t testing.TB, tx *bolt.Tx, path ...string) *bolt.Bucket {
	t.Helper()
	b, err := tx.CreateBucketIfNotExists([]byte(path[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range path[1:] {
		if b, err = b.CreateBucketIfNotExists([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// name records an image name with target in namespace moby.
func (f *fakeStore) name(name string, target descriptor) {
	created, _ := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).MarshalBinary()
	size := make([]byte, binary.MaxVarintLen64)
	size = size[:binary.PutVarint(size, target.Size)]
	err := f.meta.Update(func(tx *bolt.Tx) error {
		putAll(f.t, mkBuckets(f.t, tx, "v1", namespace, "images", name), map[string][]byte{"createdat": created, "updatedat": created})
		putAll(f.t, mkBuckets(f.t, tx, "v1", namespace, "images", name, "target"), map[string][]byte{
			"digest": []byte(target.Digest), "mediatype": []byte(target.MediaType), "size": size,
		})
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// unpack records the image with config as unpacked by snapshotter sn into
// a snapshot of chain ID chain, of the given kind, and for btrfs makes its
// subvolume directory holding marker; it returns the subvolume's path
// relative to the root.
func (f *fakeStore) unpack(config descriptor, sn, chain string, kind byte, marker string) string {
	id := f.next
	f.next++
	key := namespace + "/" + strconv.FormatUint(id+100, 10) + "/" + chain
	err := f.meta.Update(func(tx *bolt.Tx) error {
		putAll(f.t, mkBuckets(f.t, tx, "v1", namespace, "content", "blob", config.Digest, "labels"),
			map[string][]byte{gcRefSnapshot + sn: []byte(chain), "containerd.io/distribution.source.docker.io": []byte("library/x")})
		if sn == snapshotterID {
			putAll(f.t, mkBuckets(f.t, tx, "v1", namespace, "snapshots", sn, chain), map[string][]byte{"name": []byte(key)})
		}
		return nil
	})
	if err != nil || sn != snapshotterID {
		if err != nil {
			f.t.Fatal(err)
		}
		return ""
	}
	idb := make([]byte, binary.MaxVarintLen64)
	idb = idb[:binary.PutUvarint(idb, id)]
	err = f.snap.Update(func(tx *bolt.Tx) error {
		putAll(f.t, mkBuckets(f.t, tx, "v1", "snapshots", key), map[string][]byte{"id": idb, "kind": {kind}})
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	sub := snapshotsDir + "/" + strconv.FormatUint(id, 10)
	if err := os.MkdirAll(filepath.Join(f.root, sub, "etc"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, sub, "etc/marker"), []byte(marker), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return sub
}

func diffID(s string) string { return digestOf([]byte(s)) }
