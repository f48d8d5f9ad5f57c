//go:build linux

package btrfs

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ioctl ABI below is transcribed from the kernel's UAPI headers,
// include/uapi/linux/btrfs.h and include/uapi/linux/btrfs_tree.h. Sizes are
// pinned by TestStructSizes against the kernel's sizeof values; the request
// numbers by TestIoctlNumbers. amd64 and arm64 both use the asm-generic
// _IOC layout (dir<<30 | size<<16 | type<<8 | nr), so one table serves both.

const (
	iocWrite = 1
	iocRead  = 2
)

func ioc(dir, nr, size uintptr) uintptr {
	const btrfsIoctlMagic = 0x94 // BTRFS_IOCTL_MAGIC
	return dir<<30 | size<<16 | btrfsIoctlMagic<<8 | nr
}

// From btrfs.h.
const (
	volNameMax        = 255  // BTRFS_VOL_NAME_MAX
	pathNameMax       = 4087 // BTRFS_PATH_NAME_MAX
	subvolNameMax     = 4039 // BTRFS_SUBVOL_NAME_MAX
	inoLookupPathMax  = 4080 // BTRFS_INO_LOOKUP_PATH_MAX
	uuidSize          = 16   // BTRFS_UUID_SIZE
	subvolRdonly      = 1 << 1
	searchKeySize     = 104 // sizeof(struct btrfs_ioctl_search_key)
	searchArgsBufSize = 4096 - searchKeySize
)

// From btrfs_tree.h.
const (
	rootTreeObjectID      = 1   // BTRFS_ROOT_TREE_OBJECTID: the tree of tree roots
	fsTreeObjectID        = 5   // BTRFS_FS_TREE_OBJECTID: the top-level subvolume
	firstFreeObjectID     = 256 // BTRFS_FIRST_FREE_OBJECTID: a subvolume's root dir inode
	rootRefKey            = 156 // BTRFS_ROOT_REF_KEY: (parent id, ROOT_REF, child id) -> btrfs_root_ref
	rootRefHeaderSize     = 18  // sizeof(struct btrfs_root_ref), packed: dirid, sequence, name_len
	btrfsSuperMagic       = 0x9123683e
	rootSubvolRdonlyFlags = 1 << 0 // BTRFS_ROOT_SUBVOL_RDONLY in get_subvol_info.flags
)

// struct btrfs_ioctl_vol_args.
type volArgs struct {
	Fd   int64
	Name [pathNameMax + 1]byte
}

// struct btrfs_ioctl_vol_args_v2 with the first union as unused[4] and the
// second as name (the qgroup_inherit pointer variant is never used here).
type volArgsV2 struct {
	Fd      int64
	Transid uint64
	Flags   uint64
	Unused  [4]uint64
	Name    [subvolNameMax + 1]byte
}

// struct btrfs_ioctl_ino_lookup_args.
type inoLookupArgs struct {
	Treeid   uint64
	Objectid uint64
	Name     [inoLookupPathMax]byte
}

// struct btrfs_ioctl_search_key.
type searchKey struct {
	TreeID      uint64
	MinObjectid uint64
	MaxObjectid uint64
	MinOffset   uint64
	MaxOffset   uint64
	MinTransid  uint64
	MaxTransid  uint64
	MinType     uint32
	MaxType     uint32
	NrItems     uint32
	Unused      uint32
	Unused1     uint64
	Unused2     uint64
	Unused3     uint64
	Unused4     uint64
}

// struct btrfs_ioctl_search_header; items in the result buffer follow it.
type searchHeader struct {
	Transid  uint64
	Objectid uint64
	Offset   uint64
	Type     uint32
	Len      uint32
}

// struct btrfs_ioctl_search_args.
type searchArgs struct {
	Key searchKey
	Buf [searchArgsBufSize]byte
}

// struct btrfs_ioctl_timespec (16 bytes: the kernel pads after nsec).
type ioctlTimespec struct {
	Sec  uint64
	Nsec uint32
	_    uint32
}

// struct btrfs_ioctl_get_subvol_info_args.
type getSubvolInfoArgs struct {
	Treeid       uint64
	Name         [volNameMax + 1]byte
	ParentID     uint64
	Dirid        uint64
	Generation   uint64
	Flags        uint64
	UUID         [uuidSize]byte
	ParentUUID   [uuidSize]byte
	ReceivedUUID [uuidSize]byte
	Ctransid     uint64
	Otransid     uint64
	Stransid     uint64
	Rtransid     uint64
	Ctime        ioctlTimespec
	Otime        ioctlTimespec
	Stime        ioctlTimespec
	Rtime        ioctlTimespec
	Reserved     [8]uint64
}

var (
	iocSubvolCreate   = ioc(iocWrite, 14, unsafe.Sizeof(volArgs{}))               // BTRFS_IOC_SUBVOL_CREATE
	iocSnapDestroy    = ioc(iocWrite, 15, unsafe.Sizeof(volArgs{}))               // BTRFS_IOC_SNAP_DESTROY
	iocTreeSearch     = ioc(iocWrite|iocRead, 17, unsafe.Sizeof(searchArgs{}))    // BTRFS_IOC_TREE_SEARCH
	iocInoLookup      = ioc(iocWrite|iocRead, 18, unsafe.Sizeof(inoLookupArgs{})) // BTRFS_IOC_INO_LOOKUP
	iocSnapCreateV2   = ioc(iocWrite, 23, unsafe.Sizeof(volArgsV2{}))             // BTRFS_IOC_SNAP_CREATE_V2
	iocGetSubvolInfo  = ioc(iocRead, 60, unsafe.Sizeof(getSubvolInfoArgs{}))      // BTRFS_IOC_GET_SUBVOL_INFO
	iocSubvolGetflags = ioc(iocRead, 25, 8)                                       // BTRFS_IOC_SUBVOL_GETFLAGS (__u64)
	iocSubvolSetflags = ioc(iocWrite, 26, 8)                                      // BTRFS_IOC_SUBVOL_SETFLAGS (__u64)
)

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}
