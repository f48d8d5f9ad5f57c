//go:build linux

// Package btrfs is a small, pure-Go (no cgo) binding of the btrfs ioctls
// dockroot needs: recognising subvolumes, snapshotting an image subvolume
// into a writable layer, and deleting a layer together with the subvolumes
// nested inside it.
//
// It is imported by snapshot/ (the rw-layer lifecycle) and so ends up in the
// static /init; that is why it does not use containerd/btrfs, which needs
// cgo. Nested subvolumes are found with a tree search over the root tree's
// ROOT_REF items instead of walking the files of a layer, so deleting a
// layer costs the same whether it holds a thousand files or a million.
//
// Most calls need CAP_SYS_ADMIN (tree search, deletion, snapshot of a
// subvolume you do not own); IsBtrfs, IsSubvolume, SubvolID and SubvolInfo
// do not.
//
// It is a leaf: it imports nothing of dockroot's (ioctls through
// golang.org/x/sys/unix, no cgo).
package btrfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TopLevelID is the subvolume ID of a btrfs filesystem's top level
// (BTRFS_FS_TREE_OBJECTID). It can never be deleted.
const TopLevelID = fsTreeObjectID

// UUID is a subvolume UUID as the kernel stores it.
type UUID [uuidSize]byte

// String formats u the way `btrfs subvolume show` does.
func (u UUID) String() string {
	if u.IsZero() {
		return "-"
	}
	b := u[:]
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// IsZero reports whether u is unset (for example the parent UUID of a
// subvolume that is not a snapshot).
func (u UUID) IsZero() bool { return u == UUID{} }

// Info describes one subvolume, as BTRFS_IOC_GET_SUBVOL_INFO reports it.
type Info struct {
	ID           uint64
	Name         string // the name in its parent directory ("" for the top level)
	ParentID     uint64 // the subvolume that contains it (0 for the top level)
	DirID        uint64 // inode of the directory in ParentID that holds it
	Generation   uint64 // last transaction that changed the tree; taking a snapshot of it does too
	CTransID     uint64 // last transaction that changed the subvolume's entries (not a snapshot of it)
	ReadOnly     bool
	UUID         UUID
	ParentUUID   UUID // the source this was snapshotted from; zero if none
	ReceivedUUID UUID
	Ctime, Otime time.Time // last change; creation
}

// Child is a subvolume nested directly inside another one.
type Child struct {
	ID    uint64
	DirID uint64 // inode of the directory in the parent that holds it
	Path  string // relative to the parent subvolume's root, e.g. "var/lib/machines"
}

// IsBtrfs reports whether path lies on a btrfs filesystem.
func IsBtrfs(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return uint32(st.Type) == btrfsSuperMagic, nil
}

// IsSubvolume reports whether path is the root directory of a btrfs
// subvolume (the top level included): on btrfs every subvolume's root
// directory is inode 256 (BTRFS_FIRST_FREE_OBJECTID), and no other
// directory is. path is not followed if it is a symlink.
func IsSubvolume(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Ino != firstFreeObjectID {
		return false, nil
	}
	return IsBtrfs(path)
}

// SubvolID returns the ID of the subvolume that contains path.
func SubvolID(path string) (uint64, error) {
	fd, err := openDir(path)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	id, err := subvolIDOf(fd)
	if err != nil {
		return 0, fmt.Errorf("btrfs subvolume id of %s: %w", path, err)
	}
	return id, nil
}

// subvolIDOf asks BTRFS_IOC_INO_LOOKUP for treeid 0 and the root inode:
// the kernel answers with the ID of fd's subvolume, without privileges.
func subvolIDOf(fd int) (uint64, error) {
	args := inoLookupArgs{Objectid: firstFreeObjectID}
	if err := ioctl(fd, iocInoLookup, unsafe.Pointer(&args)); err != nil {
		return 0, err
	}
	return args.Treeid, nil
}

// SubvolInfo describes the subvolume that contains path (kernel 4.18+).
func SubvolInfo(path string) (*Info, error) {
	fd, err := openDir(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var a getSubvolInfoArgs
	if err := ioctl(fd, iocGetSubvolInfo, unsafe.Pointer(&a)); err != nil {
		return nil, fmt.Errorf("btrfs subvolume info of %s: %w", path, err)
	}
	return &Info{
		ID:           a.Treeid,
		Name:         cString(a.Name[:]),
		ParentID:     a.ParentID,
		DirID:        a.Dirid,
		Generation:   a.Generation,
		CTransID:     a.Ctransid,
		ReadOnly:     a.Flags&rootSubvolRdonlyFlags != 0,
		UUID:         a.UUID,
		ParentUUID:   a.ParentUUID,
		ReceivedUUID: a.ReceivedUUID,
		Ctime:        time.Unix(int64(a.Ctime.Sec), int64(a.Ctime.Nsec)),
		Otime:        time.Unix(int64(a.Otime.Sec), int64(a.Otime.Nsec)),
	}, nil
}

// Snapshot creates dstDir/name as a snapshot of the subvolume src. The
// snapshot is not recursive: subvolumes nested in src appear in it as empty
// directories (kernel behaviour).
func Snapshot(src, dstDir, name string, readonly bool) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("btrfs snapshot %s to %s: %w", src, filepath.Join(dstDir, name), err)
	}
	srcFd, err := openDir(src)
	if err != nil {
		return err
	}
	defer unix.Close(srcFd)
	dirFd, err := openDir(dstDir)
	if err != nil {
		return err
	}
	defer unix.Close(dirFd)
	args := volArgsV2{Fd: int64(srcFd)}
	if readonly {
		args.Flags = subvolRdonly
	}
	copy(args.Name[:], name)
	if err := ioctl(dirFd, iocSnapCreateV2, unsafe.Pointer(&args)); err != nil {
		return fmt.Errorf("btrfs snapshot %s to %s: %w", src, filepath.Join(dstDir, name), err)
	}
	return nil
}

// CreateSubvolume creates an empty subvolume at path; its parent directory
// must exist.
func CreateSubvolume(path string) error {
	dir, name := filepath.Split(filepath.Clean(path))
	if err := checkName(name); err != nil {
		return fmt.Errorf("btrfs subvolume create %s: %w", path, err)
	}
	dirFd, err := openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dirFd)
	var args volArgs
	copy(args.Name[:], name)
	if err := ioctl(dirFd, iocSubvolCreate, unsafe.Pointer(&args)); err != nil {
		return fmt.Errorf("btrfs subvolume create %s: %w", path, err)
	}
	return nil
}

// ListChildren returns the subvolumes nested directly inside the subvolume
// whose root is path, in subvolume-ID order.
//
// It reads the ROOT_REF items keyed (parent id, ROOT_REF, child id) in the
// root tree with BTRFS_IOC_TREE_SEARCH, then resolves each item's directory
// inode to a path with BTRFS_IOC_INO_LOOKUP. Both cost is per nested
// subvolume, never per file. Needs CAP_SYS_ADMIN.
func ListChildren(path string) ([]Child, error) {
	fd, err := openSubvolRoot(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	id, err := subvolIDOf(fd)
	if err != nil {
		return nil, fmt.Errorf("btrfs subvolume id of %s: %w", path, err)
	}
	children, err := searchRootRefs(fd, id)
	if err != nil {
		return nil, fmt.Errorf("btrfs tree search for subvolumes inside %s (id %d): %w", path, id, err)
	}
	for i := range children {
		dir, err := inodePath(fd, id, children[i].DirID)
		if err != nil {
			return nil, fmt.Errorf("btrfs inode lookup of dir %d in %s (id %d): %w", children[i].DirID, path, id, err)
		}
		children[i].Path = dir + children[i].Path
	}
	return children, nil
}

// searchRootRefs returns id's ROOT_REF items; Child.Path holds only the
// child's name until the caller prefixes its directory.
func searchRootRefs(fd int, id uint64) ([]Child, error) {
	var args searchArgs
	args.Key = searchKey{
		TreeID:      rootTreeObjectID,
		MinObjectid: id, MaxObjectid: id,
		MinType: rootRefKey, MaxType: rootRefKey,
		MinOffset: 0, MaxOffset: ^uint64(0),
		MinTransid: 0, MaxTransid: ^uint64(0),
	}
	var out []Child
	for {
		args.Key.NrItems = 4096
		if err := ioctl(fd, iocTreeSearch, unsafe.Pointer(&args)); err != nil {
			if errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("%w (tree search needs CAP_SYS_ADMIN)", err)
			}
			return nil, err
		}
		if args.Key.NrItems == 0 {
			return out, nil
		}
		items, last, err := parseRootRefs(args.Buf[:], int(args.Key.NrItems), id)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if last == ^uint64(0) {
			return out, nil
		}
		args.Key.MinOffset = last + 1
	}
}

// parseRootRefs decodes n search results from buf: each a native-endian
// btrfs_ioctl_search_header followed by the item, here a little-endian
// on-disk btrfs_root_ref {dirid, sequence, name_len} and the name.
func parseRootRefs(buf []byte, n int, parent uint64) (children []Child, lastOffset uint64, err error) {
	const hdrSize = int(unsafe.Sizeof(searchHeader{}))
	off := 0
	for i := 0; i < n; i++ {
		if off+hdrSize > len(buf) {
			return nil, 0, fmt.Errorf("tree search result %d of %d overruns the buffer", i, n)
		}
		h := buf[off : off+hdrSize]
		objectid := binary.NativeEndian.Uint64(h[8:])
		offset := binary.NativeEndian.Uint64(h[16:])
		typ := binary.NativeEndian.Uint32(h[24:])
		length := int(binary.NativeEndian.Uint32(h[28:]))
		off += hdrSize
		if off+length > len(buf) {
			return nil, 0, fmt.Errorf("tree search item %d of %d (len %d) overruns the buffer", i, n, length)
		}
		item := buf[off : off+length]
		off += length
		lastOffset = offset
		if typ != rootRefKey || objectid != parent {
			continue
		}
		if len(item) < rootRefHeaderSize {
			return nil, 0, fmt.Errorf("ROOT_REF item for subvolume %d is %d bytes, want at least %d", offset, len(item), rootRefHeaderSize)
		}
		nameLen := int(binary.LittleEndian.Uint16(item[16:]))
		if rootRefHeaderSize+nameLen > len(item) {
			return nil, 0, fmt.Errorf("ROOT_REF item for subvolume %d: name length %d exceeds item", offset, nameLen)
		}
		children = append(children, Child{
			ID:    offset,
			DirID: binary.LittleEndian.Uint64(item[0:]),
			Path:  string(item[rootRefHeaderSize : rootRefHeaderSize+nameLen]),
		})
	}
	return children, lastOffset, nil
}

// inodePath returns the path of directory inode dirid inside subvolume
// tree, relative to the subvolume root, with a trailing slash ("" for the
// root itself), as BTRFS_IOC_INO_LOOKUP reports it.
func inodePath(fd int, tree, dirid uint64) (string, error) {
	if dirid == firstFreeObjectID {
		return "", nil
	}
	args := inoLookupArgs{Treeid: tree, Objectid: dirid}
	if err := ioctl(fd, iocInoLookup, unsafe.Pointer(&args)); err != nil {
		return "", err
	}
	return cString(args.Name[:]), nil
}

// Delete deletes the subvolume at path. It fails with ENOTEMPTY if
// subvolumes are nested inside it; use DeleteRecursive for those.
func Delete(path string) error {
	return deleteSubvol(path, 0)
}

// DeleteRecursive deletes the subvolume at path and every subvolume nested
// inside it, deepest first. Nested subvolumes are found by tree search, so
// the cost grows with the number of subvolumes, not of files. A read-only
// subvolume that holds children is made writable first: the kernel refuses
// to unlink entries from a read-only tree (EROFS), and it is being deleted
// anyway.
func DeleteRecursive(path string) error {
	return deleteRecursive(filepath.Clean(path), 0)
}

func deleteRecursive(path string, wantID uint64) error {
	children, err := ListChildren(path)
	if err != nil {
		return err
	}
	if len(children) > 0 {
		if err := makeWritable(path); err != nil {
			return err
		}
	}
	for _, c := range children {
		if err := deleteRecursive(filepath.Join(path, c.Path), c.ID); err != nil {
			return err
		}
	}
	return deleteSubvol(path, wantID)
}

// deleteSubvol deletes one subvolume with BTRFS_IOC_SNAP_DESTROY on its
// parent directory. If wantID is not 0 the subvolume must have that ID, so
// a rename between listing and deleting cannot make it delete another one.
func deleteSubvol(path string, wantID uint64) error {
	path = filepath.Clean(path)
	fd, err := openSubvolRoot(path)
	if err != nil {
		return err
	}
	id, err := subvolIDOf(fd)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("btrfs subvolume id of %s: %w", path, err)
	}
	if id == TopLevelID {
		return fmt.Errorf("btrfs delete %s: refusing to delete the top-level subvolume (id %d)", path, id)
	}
	if wantID != 0 && id != wantID {
		return fmt.Errorf("btrfs delete %s: it is subvolume %d, expected %d (renamed meanwhile?)", path, id, wantID)
	}
	dir, name := filepath.Split(path)
	dirFd, err := openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dirFd)
	var args volArgs
	copy(args.Name[:], name)
	if err := ioctl(dirFd, iocSnapDestroy, unsafe.Pointer(&args)); err != nil {
		return fmt.Errorf("btrfs delete subvolume %s (id %d): %w", path, id, err)
	}
	return nil
}

// makeWritable clears the read-only flag of the subvolume at path.
func makeWritable(path string) error {
	fd, err := openDir(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var flags uint64
	if err := ioctl(fd, iocSubvolGetflags, unsafe.Pointer(&flags)); err != nil {
		return fmt.Errorf("btrfs get flags of %s: %w", path, err)
	}
	if flags&subvolRdonly == 0 {
		return nil
	}
	flags &^= subvolRdonly
	if err := ioctl(fd, iocSubvolSetflags, unsafe.Pointer(&flags)); err != nil {
		return fmt.Errorf("btrfs clear read-only flag of %s: %w", path, err)
	}
	return nil
}

// Sync commits the current btrfs transaction of the filesystem holding
// path (syncfs), so that renames and deletions done before it are on disk
// before whatever is written after it.
func Sync(path string) error {
	fd, err := openDir(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: path, Err: err}
	}
	return nil
}

func openDir(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// openSubvolRoot opens path, refusing a symlink as the last element and
// anything that is not the root directory of a btrfs subvolume.
func openSubvolRoot(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	var fs unix.Statfs_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := unix.Fstatfs(fd, &fs); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "fstatfs", Path: path, Err: err}
	}
	if uint32(fs.Type) != btrfsSuperMagic {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not on btrfs (filesystem magic %#x)", path, uint32(fs.Type))
	}
	if st.Ino != firstFreeObjectID {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is a plain directory, not a btrfs subvolume", path)
	}
	return fd, nil
}

func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("invalid subvolume name %q", name)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("subvolume name %q contains a slash", name)
	case len(name) > volNameMax:
		return fmt.Errorf("subvolume name %q is longer than %d bytes", name, volNameMax)
	}
	return nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
