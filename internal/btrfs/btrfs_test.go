//go:build linux

package btrfs

import (
	"encoding/binary"
	"testing"
	"unsafe"
)

// The kernel's sizes, from sizeof() over include/uapi/linux/btrfs.h and
// btrfs_tree.h (gcc, Linux 6.x UAPI headers; the ABI is stable).
func TestStructSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"btrfs_ioctl_vol_args", unsafe.Sizeof(volArgs{}), 4096},
		{"btrfs_ioctl_vol_args_v2", unsafe.Sizeof(volArgsV2{}), 4096},
		{"btrfs_ioctl_ino_lookup_args", unsafe.Sizeof(inoLookupArgs{}), 4096},
		{"btrfs_ioctl_search_key", unsafe.Sizeof(searchKey{}), 104},
		{"btrfs_ioctl_search_header", unsafe.Sizeof(searchHeader{}), 32},
		{"btrfs_ioctl_search_args", unsafe.Sizeof(searchArgs{}), 4096},
		{"btrfs_ioctl_timespec", unsafe.Sizeof(ioctlTimespec{}), 16},
		{"btrfs_ioctl_get_subvol_info_args", unsafe.Sizeof(getSubvolInfoArgs{}), 504},
	} {
		if tc.got != tc.want {
			t.Errorf("sizeof(%s) = %d, kernel has %d", tc.name, tc.got, tc.want)
		}
	}
	// Offsets the kernel reads that a misplaced field would shift.
	var v volArgsV2
	if off := unsafe.Offsetof(v.Name); off != 56 {
		t.Errorf("offsetof(btrfs_ioctl_vol_args_v2.name) = %d, want 56", off)
	}
	var s getSubvolInfoArgs
	if off := unsafe.Offsetof(s.UUID); off != 296 {
		t.Errorf("offsetof(get_subvol_info_args.uuid) = %d, want 296", off)
	}
	if off := unsafe.Offsetof(s.Otime); off != 392 {
		t.Errorf("offsetof(get_subvol_info_args.otime) = %d, want 392", off)
	}
}

// The request numbers as the kernel's _IOW/_IOWR/_IOR macros expand them.
func TestIoctlNumbers(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"BTRFS_IOC_SUBVOL_CREATE", iocSubvolCreate, 0x5000940e},
		{"BTRFS_IOC_SNAP_DESTROY", iocSnapDestroy, 0x5000940f},
		{"BTRFS_IOC_TREE_SEARCH", iocTreeSearch, 0xd0009411},
		{"BTRFS_IOC_INO_LOOKUP", iocInoLookup, 0xd0009412},
		{"BTRFS_IOC_SNAP_CREATE_V2", iocSnapCreateV2, 0x50009417},
		{"BTRFS_IOC_SUBVOL_GETFLAGS", iocSubvolGetflags, 0x80089419},
		{"BTRFS_IOC_SUBVOL_SETFLAGS", iocSubvolSetflags, 0x4008941a},
		{"BTRFS_IOC_GET_SUBVOL_INFO", iocGetSubvolInfo, 0x81f8943c},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, kernel has %#x", tc.name, tc.got, tc.want)
		}
	}
}

// searchItem encodes one tree search result the way the kernel lays it out.
func searchItem(objectid, offset uint64, typ uint32, item []byte) []byte {
	h := make([]byte, 32)
	binary.NativeEndian.PutUint64(h[8:], objectid)
	binary.NativeEndian.PutUint64(h[16:], offset)
	binary.NativeEndian.PutUint32(h[24:], typ)
	binary.NativeEndian.PutUint32(h[28:], uint32(len(item)))
	return append(h, item...)
}

func rootRef(dirid uint64, name string) []byte {
	b := make([]byte, 18)
	binary.LittleEndian.PutUint64(b[0:], dirid)
	binary.LittleEndian.PutUint64(b[8:], 7) // sequence: unused here
	binary.LittleEndian.PutUint16(b[16:], uint16(len(name)))
	return append(b, name...)
}

func TestParseRootRefs(t *testing.T) {
	var buf []byte
	buf = append(buf, searchItem(256, 257, rootRefKey, rootRef(256, "a"))...)
	buf = append(buf, searchItem(256, 258, rootRefKey, rootRef(300, "machines"))...)
	buf = append(buf, searchItem(999, 259, rootRefKey, rootRef(256, "other-parent"))...)
	buf = append(buf, searchItem(256, 260, 132 /* ROOT_ITEM */, make([]byte, 40))...)
	buf = append(buf, make([]byte, 64)...) // unused tail of the 4k buffer

	got, last, err := parseRootRefs(buf, 4, 256)
	if err != nil {
		t.Fatal(err)
	}
	want := []Child{{ID: 257, DirID: 256, Path: "a"}, {ID: 258, DirID: 300, Path: "machines"}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("child %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if last != 260 {
		t.Errorf("last offset = %d, want 260 (the next search must resume after it)", last)
	}
}

func TestParseRootRefsRejectsTruncation(t *testing.T) {
	for name, tc := range map[string]struct {
		buf []byte
		n   int
	}{
		"header beyond buffer":  {searchItem(256, 257, rootRefKey, rootRef(256, "a"))[:20], 1},
		"item beyond buffer":    {searchItem(256, 257, rootRefKey, rootRef(256, "abc"))[:40], 1},
		"name beyond item":      {searchItem(256, 257, rootRefKey, rootRef(256, "abc")[:19]), 1},
		"item shorter than ref": {searchItem(256, 257, rootRefKey, make([]byte, 10)), 1},
		"more items than bytes": {searchItem(256, 257, rootRefKey, rootRef(256, "a")), 2},
	} {
		if _, _, err := parseRootRefs(tc.buf, tc.n, 256); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestUUIDString(t *testing.T) {
	u := UUID{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	if got, want := u.String(), "12345678-9abc-def0-0123-456789abcdef"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (UUID{}).String(); got != "-" {
		t.Errorf("zero UUID String() = %q, want -", got)
	}
}

func TestCheckName(t *testing.T) {
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'a'
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"layer", true},
		{"docker_rwlayer.prev.1", true},
		{string(long[:255]), true},
		{string(long), false},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
	} {
		if err := checkName(tc.name); (err == nil) != tc.ok {
			t.Errorf("checkName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
