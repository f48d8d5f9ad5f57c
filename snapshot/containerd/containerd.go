// Package containerd reads Docker's containerd image store (the default of
// Docker 29, and of any Docker with "features": {"containerd-snapshotter":
// true}) when its images are unpacked by containerd's btrfs snapshotter,
// offline: no containerd, no Docker, no client library. The metadata is
// read from containerd's bbolt databases, read-only, with a bounded wait
// for their lock (a running containerd holds it; then a private copy is
// read). stores.OpenPaths picks it for dockroot.store=containerd and looks
// in it for dockroot.store=auto; the boot and the host tool reach it only
// through package stores.
//
// The chain, relative to containerd's root (Docker's own managed
// containerd: <data-root>/containerd/daemon; a system containerd that
// dockerd uses with --containerd: /var/lib/containerd), verified against
// containerd 2.4.2 (core/metadata/buckets.go, core/snapshots/storage/bolt.go,
// plugins/snapshots/btrfs/btrfs.go, core/unpack/unpacker.go) and dockerd
// 29 (moby v2.0.0-beta.24):
//
//	io.containerd.metadata.v1.bolt/meta.db
//	  v1/moby/images/<name>/target/{digest,mediatype,size}   the image; Docker's image ID is target.digest
//	  v1/moby/images/<name>/createdat                          time.MarshalBinary
//	io.containerd.content.v1.content/blobs/sha256/<hex>        the target (index or manifest) -> the
//	                                                           manifest of the machine's platform -> config
//	                                                           (rootfs.diff_ids -> chain ID)
//	meta.db v1/moby/content/blob/<config digest>/labels/containerd.io/gc.ref.snapshot.btrfs = chain ID, once unpacked
//	meta.db v1/moby/snapshots/btrfs/<chain ID>/name            the snapshotter's key, "moby/<n>/<chain ID>"
//	io.containerd.snapshotter.v1.btrfs/metadata.db
//	  v1/snapshots/<key>/{id (uvarint), kind (1 byte, 3 = committed)}
//	io.containerd.snapshotter.v1.btrfs/snapshots/<id>          the committed, read-only subvolume:
//	                                                           the image's whole root filesystem
//
// It must not import snapshot/stores, the boot (hook), the host tool's
// packages or any containerd or Docker client, and no cgo: the init links
// it. Its errors carry operands, not advice.
package containerd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
)

// Files and buckets below containerd's root.
const (
	metaDB        = "io.containerd.metadata.v1.bolt/meta.db"
	contentBlobs  = "io.containerd.content.v1.content/blobs/sha256"
	snapshotterID = "btrfs"
	snapshotsRoot = "io.containerd.snapshotter.v1." + snapshotterID
	snapshotsDB   = snapshotsRoot + "/metadata.db"
	snapshotsDir  = snapshotsRoot + "/snapshots"
	// namespace is Docker's containerd namespace (dockerd
	// --containerd-namespace, default "moby").
	namespace = "moby"
	// gcRefSnapshot is the label the unpacker puts on a config blob,
	// followed by the snapshotter's name, with the chain ID as its value.
	gcRefSnapshot = "containerd.io/gc.ref.snapshot."
	// danglingPrefix names the images Docker keeps without a tag
	// ("moby-dangling@sha256:…", daemon/containerd/image_delete.go).
	danglingPrefix = "moby-dangling@"
	// kindCommitted is snapshots.KindCommitted.
	kindCommitted = 3
)

// DockerFix is the Docker configuration that gives this store: what to do
// when Docker keeps its images another way (overlayfs, another
// filesystem). It holds wherever the store's path was given.
const DockerFix = `put {"storage-driver": "btrfs", "features": {"containerd-snapshotter": true}} in /etc/docker/daemon.json, ` +
	`with Docker's data root (and a system containerd's root) on the btrfs filesystem, restart dockerd and pull or build the images again`

// Options tune how the store reads.
type Options struct {
	// LockTimeout bounds the wait for a database's lock before a private
	// copy is read instead; 0 is 2 s.
	LockTimeout time.Duration
	// Platform is the platform picked from an index; zero is linux and
	// the architecture dockroot was built for.
	Platform Platform
}

type store struct {
	fsys  fs.FS
	root  string // containerd root relative to the btrfs top level
	where string // containerd root as shown in messages
	opts  Options
	// locked: the databases found locked (by a running containerd), read
	// from a copy from then on.
	locked *sync.Map
}

// New opens the containerd store whose root is root, relative to top,
// where the btrfs top level (subvolid=5) is mounted. Nothing is read until
// Resolve or List.
func New(top, root string, opts Options) snapshot.Store {
	full := filepath.Join(top, root)
	return NewFS(snapshot.StoreDirFS(full), root, full, opts)
}

// NewFS is New over fsys rooted at containerd's root; where names that
// root in messages. The databases are opened through fsys, so it must give
// *os.File (snapshot.StoreDirFS does).
func NewFS(fsys fs.FS, root, where string, opts Options) snapshot.Store {
	if opts.Platform.OS == "" {
		opts.Platform = Platform{OS: "linux", Architecture: runtime.GOARCH}
	}
	return &store{fsys: fsys, root: path.Clean(filepath.ToSlash(root)), where: where, opts: opts, locked: &sync.Map{}}
}

func (s *store) Name() string { return layout.StoreContainerd }

func (s *store) file(name string) string { return filepath.Join(s.where, filepath.FromSlash(name)) }

func (s *store) describe() string {
	return fmt.Sprintf("the containerd image store at %s (namespace %s, btrfs snapshotter)", s.where, namespace)
}

// imageRecord is one entry of v1/moby/images.
type imageRecord struct {
	name    string // as stored: "docker.io/library/desk:1"
	ref     snapshot.Ref
	named   bool // name parses as a reference (not a dangling image)
	target  descriptor
	created time.Time
}

// index is what Resolve and List need from meta.db, read in one
// transaction: every image record, and for the image being resolved, the
// content labels and the snapshot record.
type index struct {
	images   []*imageRecord // sorted by name
	byTarget map[string][]*imageRecord
}

func (s *store) Resolve(ref string) (*snapshot.Image, error) {
	ref = strings.TrimSpace(ref)
	if err := Detect(s.fsys, s.where); err != nil {
		return nil, err
	}
	var img *snapshot.Image
	err := s.view(func(tx *bolt.Tx) error {
		idx, err := readIndex(tx)
		if err != nil {
			return fmt.Errorf("%s: %w", s.file(metaDB), err)
		}
		im, matched, err := s.lookup(ref, idx)
		if err != nil {
			return err
		}
		img, err = s.resolveImage(tx, matched, im, idx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return img, nil
}

func (s *store) List() ([]snapshot.Image, error) {
	if err := Detect(s.fsys, s.where); err != nil {
		return nil, err
	}
	var out []snapshot.Image
	err := s.view(func(tx *bolt.Tx) error {
		idx, err := readIndex(tx)
		if err != nil {
			return fmt.Errorf("%s: %w", s.file(metaDB), err)
		}
		for _, im := range idx.images {
			if !im.named || im.ref.Digest != "" {
				continue
			}
			img, err := s.resolveImage(tx, im.ref.String(), im, idx)
			if err != nil {
				img = &snapshot.Image{Ref: im.ref.String(), ID: im.target.Digest, Tags: idx.tagsOf(im.target.Digest), Created: im.created, Problem: err.Error()}
			}
			out = append(out, *img)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

func (s *store) view(fn func(tx *bolt.Tx) error) error {
	return viewDB(s.fsys, metaDB, s.file(metaDB), s.opts.LockTimeout, s.locked, fn)
}

// readIndex reads v1/moby/images. A database without the bucket (a
// containerd that never stored an image for Docker) is an empty store.
func readIndex(tx *bolt.Tx) (*index, error) {
	idx := &index{byTarget: map[string][]*imageRecord{}}
	b := bucket(tx, "v1", namespace, "images")
	if b == nil {
		return idx, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		ib := b.Bucket(k)
		if v != nil || ib == nil {
			return fmt.Errorf("images entry %q is not a bucket: %w", k, snapshot.ErrCorrupt)
		}
		im, err := parseImageRecord(string(k), ib.Bucket([]byte("target")), ib.Get([]byte("createdat")))
		if err != nil {
			return err
		}
		idx.images = append(idx.images, im)
		idx.byTarget[im.target.Digest] = append(idx.byTarget[im.target.Digest], im)
		return nil
	})
	return idx, err
}

// parseImageRecord decodes one image's bucket: its name and target.
func parseImageRecord(name string, target *bolt.Bucket, createdAt []byte) (*imageRecord, error) {
	if target == nil {
		return nil, fmt.Errorf("image %q has no target bucket: %w", name, snapshot.ErrCorrupt)
	}
	return parseImageValues(name, target.Get([]byte("digest")), target.Get([]byte("mediatype")), target.Get([]byte("size")), createdAt)
}

// parseImageValues decodes an image record's values as containerd writes
// them (core/metadata/images.go writeImage): digest and mediatype as
// strings, size as a varint, createdat as time.MarshalBinary.
func parseImageValues(name string, dgst, mediaType, size, createdAt []byte) (*imageRecord, error) {
	im := &imageRecord{name: name, created: decodeTime(createdAt)}
	im.target.Digest, im.target.MediaType = string(dgst), string(mediaType)
	if err := snapshot.CheckDigest(im.target.Digest); err != nil {
		return nil, fmt.Errorf("image %q: target: %v: %w", name, err, snapshot.ErrCorrupt)
	}
	if size != nil {
		n, err := decodeVarint(size)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("image %q: target size: %v: %w", name, err, snapshot.ErrCorrupt)
		}
		im.target.Size = n
	}
	if !strings.HasPrefix(name, danglingPrefix) {
		if r, err := snapshot.ParseRef(name); err == nil && r.String() == name {
			im.ref, im.named = r, true
		}
	}
	return im, nil
}

// tags lists every image name as `docker images` shows it, familiar
// form, sorted.
func (idx *index) tags() []string {
	out := []string{}
	for _, im := range idx.images {
		if im.named {
			out = append(out, im.ref.Familiar())
		}
	}
	sort.Strings(out)
	return out
}

func (idx *index) tagsOf(target string) []string {
	out := []string{}
	for _, im := range idx.byTarget[target] {
		if im.named {
			out = append(out, im.ref.Familiar())
		}
	}
	sort.Strings(out)
	return out
}

// lookup finds the image ref names, as dockerd 29 does with the containerd
// store (daemon/containerd/image.go GetImage, resolveImage):
//
//  1. a full image ID, "sha256:<64 hex>" or 64 hex: the image whose target
//     (index or manifest) has that digest, which is what Docker shows as
//     IMAGE ID in this store;
//  2. name[:tag], normalised as Docker does ("desk" is
//     docker.io/library/desk:latest);
//  3. name@sha256:…: an image of that repository whose target has that
//     digest (what docker images --digests shows), or one stored under
//     that very name (a pull by digest);
//  4. a unique image-ID prefix of at least snapshot.MinIDPrefix digits.
//
// It returns the image and the reference it matched, normalised.
func (s *store) lookup(ref string, idx *index) (*imageRecord, string, error) {
	if id, ok := snapshot.ParseImageID(ref); ok {
		if ims := idx.byTarget[id]; len(ims) > 0 {
			return ims[0], id, nil
		}
		return nil, "", s.notFound(ref, idx, "")
	}
	r, refErr := snapshot.ParseRef(ref)
	if refErr == nil {
		for _, im := range idx.images {
			if !im.named {
				continue
			}
			if im.name == r.String() {
				return im, r.String(), nil
			}
			if r.Digest != "" && im.ref.Name() == r.Name() && im.target.Digest == r.Digest {
				return im, r.String(), nil
			}
		}
	}
	if prefix, ok := snapshot.ParseIDPrefix(ref); ok {
		var found []string
		for d := range idx.byTarget {
			if strings.HasPrefix(strings.TrimPrefix(d, "sha256:"), prefix) {
				found = append(found, d)
			}
		}
		sort.Strings(found)
		switch len(found) {
		case 1:
			return idx.byTarget[found[0]][0], found[0], nil
		case 0:
		default:
			var cands []string
			for _, d := range found {
				cands = append(cands, fmt.Sprintf("%s (%s)", d, strings.Join(idx.tagsOf(d), ", ")))
			}
			return nil, "", fmt.Errorf("image-ID prefix %q is ambiguous in %s, it matches: %s", ref, s.describe(), strings.Join(cands, "; "))
		}
	} else if refErr != nil {
		return nil, "", refErr
	}
	hint := ""
	if h := strings.TrimPrefix(ref, "sha256:"); snapshot.IsLowerHex(h) && len(h) < snapshot.MinIDPrefix {
		hint = fmt.Sprintf("image-ID prefixes need at least %d hex digits", snapshot.MinIDPrefix)
	}
	return nil, "", s.notFound(ref, idx, hint)
}

func (s *store) notFound(ref string, idx *index, hint string) error {
	return &snapshot.NotFoundError{Ref: ref, Store: s.describe(), Available: idx.tags(), Hint: hint}
}

// resolveImage follows the image's target to its config and its
// unpacked snapshot.
func (s *store) resolveImage(tx *bolt.Tx, ref string, im *imageRecord, idx *index) (*snapshot.Image, error) {
	img := &snapshot.Image{Ref: ref, ID: im.target.Digest, Tags: idx.tagsOf(im.target.Digest), Created: im.created}
	desc := im.target
	what := "manifest"
	// An index may name another index (nested indexes are allowed): a
	// bound on the depth keeps a loop of digests from spinning.
	for depth := 0; ; depth++ {
		if !isIndex(desc.MediaType) {
			break
		}
		if depth > 4 {
			return nil, &BlobError{Store: s.describe(), Ref: ref, Digest: desc.Digest, What: "index", Path: s.blobPath(desc.Digest), Err: errors.New("indexes nest more than 4 deep")}
		}
		data, err := s.readBlob(ref, "index", desc)
		if err != nil {
			return nil, err
		}
		m, have, err := parseIndex(data, s.opts.Platform)
		if err != nil {
			return nil, &BlobError{Store: s.describe(), Ref: ref, Digest: desc.Digest, What: "index", Path: s.blobPath(desc.Digest), Err: err}
		}
		if m == nil {
			return nil, &PlatformError{Store: s.describe(), Ref: ref, Digest: desc.Digest, Want: s.opts.Platform.String(), Have: have}
		}
		desc = *m
	}
	if !isManifest(desc.MediaType) {
		return nil, &BlobError{Store: s.describe(), Ref: ref, Digest: desc.Digest, What: what, Path: s.blobPath(desc.Digest),
			Err: fmt.Errorf("media type %q is neither an image index nor an image manifest", desc.MediaType)}
	}
	data, err := s.readBlob(ref, what, desc)
	if err != nil {
		return nil, err
	}
	cfgDesc, err := parseManifest(data)
	if err != nil {
		return nil, &BlobError{Store: s.describe(), Ref: ref, Digest: desc.Digest, What: what, Path: s.blobPath(desc.Digest), Err: err}
	}
	data, err = s.readBlob(ref, "config", cfgDesc)
	if err != nil {
		return nil, err
	}
	cfg, err := parseConfig(data)
	if err != nil {
		return nil, &BlobError{Store: s.describe(), Ref: ref, Digest: cfgDesc.Digest, What: "config", Path: s.blobPath(cfgDesc.Digest), Err: err}
	}
	if !cfg.Created.IsZero() {
		img.Created = cfg.Created
	}
	if len(cfg.DiffIDs) == 0 {
		return nil, fmt.Errorf("image %s: %w: its config %s lists no rootfs.diff_ids, so there is no root filesystem to boot", ref, snapshot.ErrNoLayers, cfgDesc.Digest)
	}
	img.DiffIDs = cfg.DiffIDs
	if img.ChainID, err = snapshot.ChainID(cfg.DiffIDs); err != nil {
		return nil, fmt.Errorf("image %s: config %s: %w", ref, cfgDesc.Digest, err)
	}
	labels := configLabels(tx, cfgDesc.Digest)
	if l, ok := labels[snapshotterID]; ok && l != img.ChainID {
		return nil, fmt.Errorf("image %s: config %s is labelled %s%s=%s, but its diff_ids give chain ID %s: %w",
			ref, cfgDesc.Digest, gcRefSnapshot, snapshotterID, l, img.ChainID, snapshot.ErrCorrupt)
	}
	notUnpacked := func(reason string) error {
		var others []string
		for sn := range labels {
			if sn != snapshotterID {
				others = append(others, sn)
			}
		}
		sort.Strings(others)
		return &NotUnpackedError{Store: s.describe(), Ref: ref, ChainID: img.ChainID, UnpackedFor: others, Reason: reason}
	}
	sb := bucket(tx, "v1", namespace, "snapshots", snapshotterID, img.ChainID)
	if sb == nil {
		return nil, notUnpacked("")
	}
	key := string(sb.Get([]byte("name")))
	if key == "" {
		return nil, fmt.Errorf("image %s: snapshot %s in %s has no backend name: %w", ref, img.ChainID, s.file(metaDB), snapshot.ErrCorrupt)
	}
	id, kind, err := s.snapshotID(key)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	switch {
	case id == "":
		return nil, notUnpacked(fmt.Sprintf("(key %s) is not in %s", key, s.file(snapshotsDB)))
	case kind != kindCommitted:
		return nil, notUnpacked(fmt.Sprintf("(key %s, id %s) is not committed (kind %d): it is still being written", key, id, kind))
	}
	sub := snapshotsDir + "/" + id
	fi, err := fs.Stat(s.fsys, sub)
	if serr := snapshot.StoreOpenError(s.file(sub), 0, err); serr != nil {
		return nil, fmt.Errorf("image %s: %w", ref, serr)
	}
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err
	}
	if err == nil && !fi.IsDir() {
		err = errors.New("not a directory")
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: snapshot subvolume %s (snapshot %s): %w (%w)", ref, s.file(sub), key, err, snapshot.ErrCorrupt)
	}
	img.Subvolume = path.Join(s.root, sub)
	return img, nil
}

// configLabels returns the config blob's gc.ref.snapshot labels:
// snapshotter name -> chain ID.
func configLabels(tx *bolt.Tx, configDigest string) map[string]string {
	out := map[string]string{}
	lb := bucket(tx, "v1", namespace, "content", "blob", configDigest, "labels")
	if lb == nil {
		return out
	}
	c := lb.Cursor()
	prefix := []byte(gcRefSnapshot)
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		out[string(k[len(prefix):])] = string(v)
	}
	return out
}

// snapshotID reads the snapshotter's record of key: its numeric ID (""
// when there is none) and its kind.
func (s *store) snapshotID(key string) (id string, kind int, err error) {
	err = viewDB(s.fsys, snapshotsDB, s.file(snapshotsDB), s.opts.LockTimeout, s.locked, func(tx *bolt.Tx) error {
		b := bucket(tx, "v1", "snapshots", key)
		if b == nil {
			return nil
		}
		n, k, err := parseSnapshotValues(b.Get([]byte("id")), b.Get([]byte("kind")))
		if err != nil {
			return fmt.Errorf("snapshot %s in %s: %v: %w", key, s.file(snapshotsDB), err, snapshot.ErrCorrupt)
		}
		id, kind = strconv.FormatUint(n, 10), k
		return nil
	})
	return id, kind, err
}

// parseSnapshotValues decodes a snapshot record of the snapshotter's
// database (core/snapshots/storage/bolt.go): id as a uvarint, kind as one
// byte.
func parseSnapshotValues(id, kind []byte) (uint64, int, error) {
	n, err := decodeUvarint(id)
	if err != nil {
		return 0, 0, fmt.Errorf("id: %v", err)
	}
	if len(kind) != 1 {
		return 0, 0, fmt.Errorf("kind %x is not one byte", kind)
	}
	return n, int(kind[0]), nil
}

func (s *store) blobPath(dgst string) string {
	return s.file(contentBlobs + "/" + strings.TrimPrefix(dgst, "sha256:"))
}

// readBlob reads the blob desc names and checks its size and digest.
func (s *store) readBlob(ref, what string, desc descriptor) ([]byte, error) {
	if err := desc.check(); err != nil {
		return nil, &BlobError{Store: s.describe(), Ref: ref, Digest: desc.Digest, What: what, Path: s.file(contentBlobs), Err: err}
	}
	name := contentBlobs + "/" + strings.TrimPrefix(desc.Digest, "sha256:")
	berr := &BlobError{Store: s.describe(), Ref: ref, Digest: desc.Digest, What: what, Path: s.file(name)}
	data, err := snapshot.ReadStoreFile(s.fsys, name, s.file(name), maxBlobSize)
	if errors.Is(err, fs.ErrNotExist) {
		berr.Missing, berr.Err = true, fs.ErrNotExist
		return nil, berr
	}
	if err != nil {
		berr.Err = err
		return nil, berr
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != desc.Digest {
		berr.Err = fmt.Errorf("its content hashes to %s", got)
		return nil, berr
	}
	if desc.Size != 0 && int64(len(data)) != desc.Size {
		berr.Err = fmt.Errorf("it has %d bytes, its descriptor says %d", len(data), desc.Size)
		return nil, berr
	}
	return data, nil
}

// Detect checks that root holds containerd's metadata database and its
// btrfs snapshotter, and otherwise says what is there instead (a
// *snapshot.DataRootError): another snapshotter (overlayfs, Docker's
// default on any filesystem but btrfs) cannot boot.
func Detect(fsys fs.FS, where string) error {
	_, err := fs.Stat(fsys, metaDB)
	if serr := snapshot.StoreOpenError(filepath.Join(where, metaDB), 0, err); serr != nil {
		return serr
	}
	if err != nil {
		if _, rerr := fs.Stat(fsys, "."); rerr != nil {
			return &snapshot.DataRootError{Path: where, Missing: true, Err: rerr, Kind: layout.StoreContainerd, Reason: ": " + rerr.Error()}
		}
		return &snapshot.DataRootError{Path: where, Missing: true, Err: snapshot.ErrUnsupportedStore, Kind: layout.StoreContainerd,
			Reason: fmt.Sprintf(" has no %s: %v: containerd has never run there", filepath.Join(where, metaDB), snapshot.ErrUnsupportedStore)}
	}
	if fi, err := fs.Stat(fsys, snapshotsRoot); err == nil && fi.IsDir() {
		return nil
	}
	entries, _ := fs.ReadDir(fsys, ".")
	var others []string
	for _, e := range entries {
		if sn, ok := strings.CutPrefix(e.Name(), "io.containerd.snapshotter.v1."); ok && e.IsDir() {
			others = append(others, sn)
		}
	}
	return &snapshot.DataRootError{Path: where, Err: snapshot.ErrUnsupportedStore, Kind: layout.StoreContainerd,
		Reason: fmt.Sprintf(" has no btrfs snapshotter (%s; snapshotters there: %s): %v: dockroot boots an image from the subvolume containerd's btrfs snapshotter unpacks it to; %s",
			filepath.Join(where, snapshotsRoot), orNone(others), snapshot.ErrUnsupportedStore, DockerFix)}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
