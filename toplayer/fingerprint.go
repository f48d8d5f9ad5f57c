package toplayer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sort"

	"golang.org/x/sys/unix"
)

// applyVersion names what Apply makes of a top layer. Change it whenever
// Apply's rules change, so a fingerprint taken by an older dockroot never
// matches a newer one's: a cached result of the old rules is not reused.
const applyVersion = "dockroot-toplayer-apply-2"

// Fingerprint identifies a top layer's tree as Apply would copy it. Two
// fingerprints are equal only if no entry of the tree was created,
// removed, renamed, written, chowned, chmodded or given other xattrs in
// between: see TakeFingerprint.
type Fingerprint struct {
	Sum     string // hex SHA-256
	Entries int    // entries hashed, the root directory included
	FSType  string // the top layer's filesystem, for logs
}

// ErrNoChangeTime is returned by TakeFingerprint for a filesystem whose
// inode change time does not record every change, so a fingerprint could
// miss one. The caller applies the top layer in full instead.
var ErrNoChangeTime = errors.New("its filesystem does not keep a change time for every change")

// changeTimeFS are the filesystems whose ctime the kernel updates on every
// change of content, metadata, xattrs or links (in nanoseconds), and which
// no system call can set: btrfs, ext2/3/4 (one magic), xfs, f2fs, tmpfs.
// FAT, exFAT, NTFS and ISO 9660 keep no such time, nor does a network
// filesystem whose server could change files behind it.
var changeTimeFS = map[int64]string{
	unix.BTRFS_SUPER_MAGIC: "btrfs",
	unix.EXT4_SUPER_MAGIC:  "ext4",
	unix.XFS_SUPER_MAGIC:   "xfs",
	unix.F2FS_SUPER_MAGIC:  "f2fs",
	unix.TMPFS_MAGIC:       "tmpfs",
}

// TakeFingerprint walks the top layer at src (without following symlinks)
// and hashes, for every entry in name order, its path, type, mode, owner,
// device number, size, link count, inode number, modification time and
// change time, plus the filesystem's ID (statfs f_fsid) and the version of
// Apply's rules. It reads no file data: the change time is what proves
// nothing changed, since the kernel sets it to the current time on every
// write, truncate, chown, chmod, xattr change, link, unlink and rename, and
// no system call can set it back. A file replaced by another gets a new
// inode number, and a directory's own times change when an entry is added,
// removed or renamed in it.
//
// It returns ErrNoChangeTime (wrapped) for a filesystem not known to keep
// such a time; see changeTimeFS.
func TakeFingerprint(src string) (Fingerprint, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(src, &sfs); err != nil {
		return Fingerprint{}, fmt.Errorf("fingerprint the top layer %s: %w", src, err)
	}
	fsType, ok := changeTimeFS[int64(sfs.Type)]
	if !ok {
		return Fingerprint{}, fmt.Errorf("fingerprint the top layer %s (filesystem magic %#x): %w", src, sfs.Type, ErrNoChangeTime)
	}
	fd, err := unix.Open(src, dirFlags, 0)
	if err != nil {
		return Fingerprint{}, fmt.Errorf("fingerprint the top layer %s: %w", src, err)
	}
	defer unix.Close(fd)
	w := &fpWalker{h: sha256.New()}
	w.h.Write([]byte(applyVersion))
	w.num(uint64(uint32(sfs.Fsid.Val[0])), uint64(uint32(sfs.Fsid.Val[1])))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Fingerprint{}, fmt.Errorf("fingerprint the top layer %s: %w", src, err)
	}
	w.entry(".", &st)
	if err := w.dir(fd, src, ""); err != nil {
		return Fingerprint{}, err
	}
	return Fingerprint{Sum: hex.EncodeToString(w.h.Sum(nil)), Entries: w.n, FSType: fsType}, nil
}

type fpWalker struct {
	h   hash.Hash
	n   int
	buf [8]byte
	ds  []byte
}

func (w *fpWalker) num(vs ...uint64) {
	for _, v := range vs {
		binary.LittleEndian.PutUint64(w.buf[:], v)
		w.h.Write(w.buf[:])
	}
}

// entry hashes one entry; the path is length-prefixed, so no two trees
// hash the same by running names together.
func (w *fpWalker) entry(rel string, st *unix.Stat_t) {
	w.n++
	w.num(uint64(len(rel)))
	w.h.Write([]byte(rel))
	w.num(uint64(st.Mode), uint64(st.Uid), uint64(st.Gid), uint64(st.Rdev), uint64(st.Size),
		uint64(st.Nlink), st.Ino,
		uint64(st.Mtim.Sec), uint64(st.Mtim.Nsec), uint64(st.Ctim.Sec), uint64(st.Ctim.Nsec))
}

// dir hashes the entries of the open directory fd (path, for errors;
// rel, its path in the top layer) and recurses into subdirectories.
func (w *fpWalker) dir(fd int, path, rel string) error {
	names, err := readDirNames(fd, &w.ds)
	if err != nil {
		return fmt.Errorf("fingerprint the top layer: read directory %s: %w", path, err)
	}
	sort.Strings(names)
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("fingerprint the top layer: stat %s/%s: %w", path, name, err)
		}
		r := rel + "/" + name
		w.entry(r, &st)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cfd, err := unix.Openat(fd, name, dirFlags, 0)
		if err != nil {
			return fmt.Errorf("fingerprint the top layer: open directory %s/%s: %w", path, name, err)
		}
		err = w.dir(cfd, path+"/"+name, r)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}
