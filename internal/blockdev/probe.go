package blockdev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// Superblock is what a probe learned from the start of a device, named as
// `blkid -p -o export` names it.
type Superblock struct {
	Type    string // "btrfs", "ext4", "ext3", "ext2", "jbd", "vfat", "swap", "swsuspend"
	Label   string
	UUID    string // lowercase 8-4-4-4-12, or XXXX-XXXX for vfat
	UUIDSub string // btrfs: this member device's UUID
	Version string // ext "1.0", vfat "FAT32", swap "1", swsuspend "s1suspend", ...
	// Hibernation is the signature a hibernated kernel wrote into a swap
	// area ("S1SUSPEND", ...); set only when Type is "swsuspend".
	Hibernation string
}

// prober recognises one filesystem. It returns ok=false when the magic does
// not match; err is kept for I/O failures other than a short device.
type prober func(r io.ReaderAt) (sb Superblock, ok bool, err error)

// probers run in this order and the first match wins. Signatures far into
// the device come first: mkfs.btrfs and mkfs.ext4 leave sector 0 alone, so a
// stale FAT boot sector can survive under a newer filesystem, never the
// other way round.
var probers = []struct {
	name  string
	probe prober
}{
	{"btrfs", probeBtrfs},
	{"ext", probeExt},
	{"swap", probeSwap},
	{"vfat", probeVfat},
}

// Probe reads the superblocks dockroot knows and reports the first that
// matches. An unknown or empty device gives a zero Superblock and no error.
func Probe(r io.ReaderAt) (Superblock, error) {
	for _, p := range probers {
		sb, ok, err := p.probe(r)
		if err != nil {
			return Superblock{}, fmt.Errorf("probe %s superblock: %w", p.name, err)
		}
		if ok {
			return sb, nil
		}
	}
	return Superblock{}, nil
}

// ProbeFile opens path read-only and probes it.
func ProbeFile(path string) (Superblock, error) {
	f, err := os.Open(path)
	if err != nil {
		return Superblock{}, err
	}
	defer f.Close()
	sb, err := Probe(f)
	if err != nil {
		return Superblock{}, fmt.Errorf("%s: %w", path, err)
	}
	return sb, nil
}

// readAt reads len(buf) bytes at off. A device too short to hold them is not
// an error, just not a match: ok=false.
func readAt(r io.ReaderAt, buf []byte, off int64) (ok bool, err error) {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return true, nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return false, nil
	}
	return false, fmt.Errorf("read %d bytes at offset %d: %w", len(buf), off, err)
}

// btrfs: the primary superblock is at 64 KiB (BTRFS_SUPER_INFO_OFFSET);
// offsets below are within struct btrfs_super_block
// (kernel include/uapi/linux/btrfs_tree.h).
const (
	btrfsSuperOffset = 0x10000
	btrfsFSIDOff     = 0x20  // fsid[16]
	btrfsMagicOff    = 0x40  // "_BHRfS_M"
	btrfsDevUUIDOff  = 0x10b // dev_item (at 0xc9) + uuid at 66
	btrfsLabelOff    = 0x12b // label[256]
	btrfsLabelLen    = 256
)

func probeBtrfs(r io.ReaderAt) (Superblock, bool, error) {
	buf := make([]byte, btrfsLabelOff+btrfsLabelLen)
	if ok, err := readAt(r, buf, btrfsSuperOffset); !ok {
		return Superblock{}, false, err
	}
	if string(buf[btrfsMagicOff:btrfsMagicOff+8]) != "_BHRfS_M" {
		return Superblock{}, false, nil
	}
	return Superblock{
		Type:    "btrfs",
		Label:   cString(buf[btrfsLabelOff : btrfsLabelOff+btrfsLabelLen]),
		UUID:    formatUUID(buf[btrfsFSIDOff : btrfsFSIDOff+16]),
		UUIDSub: formatUUID(buf[btrfsDevUUIDOff : btrfsDevUUIDOff+16]),
	}, true, nil
}

// ext2/3/4: struct ext4_super_block at 1024 (kernel fs/ext4/ext4.h).
const (
	extSuperOffset  = 1024
	extMagicOff     = 0x38 // s_magic, 0xEF53 little-endian
	extMinorRevOff  = 0x3e
	extRevOff       = 0x4c
	extCompatOff    = 0x5c
	extIncompatOff  = 0x60
	extROCompatOff  = 0x64
	extUUIDOff      = 0x68
	extLabelOff     = 0x78 // s_volume_name[16]
	extCompatJournl = 0x4  // COMPAT_HAS_JOURNAL
	extIncompatJDev = 0x8  // INCOMPAT_JOURNAL_DEV: an external journal, not a filesystem
	// Features ext3 understands; anything beyond them needs the ext4 driver,
	// which is how blkid decides between ext3 and ext4.
	ext3Incompat = 0x2 | 0x4 | 0x10 // FILETYPE | RECOVER | META_BG
	ext3ROCompat = 0x1 | 0x2 | 0x4  // SPARSE_SUPER | LARGE_FILE | BTREE_DIR
)

func probeExt(r io.ReaderAt) (Superblock, bool, error) {
	buf := make([]byte, 0x88)
	if ok, err := readAt(r, buf, extSuperOffset); !ok {
		return Superblock{}, false, err
	}
	le := binary.LittleEndian
	if le.Uint16(buf[extMagicOff:]) != 0xEF53 {
		return Superblock{}, false, nil
	}
	compat := le.Uint32(buf[extCompatOff:])
	incompat := le.Uint32(buf[extIncompatOff:])
	rocompat := le.Uint32(buf[extROCompatOff:])
	sb := Superblock{
		Label:   cString(buf[extLabelOff : extLabelOff+16]),
		UUID:    formatUUID(buf[extUUIDOff : extUUIDOff+16]),
		Version: fmt.Sprintf("%d.%d", le.Uint32(buf[extRevOff:]), le.Uint16(buf[extMinorRevOff:])),
	}
	switch {
	case incompat&extIncompatJDev != 0:
		sb.Type = "jbd"
	case incompat&^ext3Incompat != 0 || rocompat&^ext3ROCompat != 0:
		sb.Type = "ext4"
	case compat&extCompatJournl != 0:
		sb.Type = "ext3"
	default:
		sb.Type = "ext2"
	}
	return sb, true, nil
}

// Swap: the signature is the last 10 bytes of the first page, and the page
// size is that of the kernel that ran mkswap, so every size Linux uses is
// tried. A hibernating kernel replaces "SWAPSPACE2" with its own signature
// (kernel/power/swap.c HIBERNATE_SIG) and leaves the v1 header at 1024 —
// version, last_page, nr_badpages, uuid[16], volume_name[16] — in place.
var swapPageSizes = []int64{4096, 8192, 16384, 32768, 65536}

// hibernationSigs are the signatures that mean "a hibernated system's image
// is in this swap area": resuming from it after booting something else
// corrupts that system's filesystems.
var hibernationSigs = []struct{ sig, version string }{
	{"S1SUSPEND", "s1suspend"},
	{"S2SUSPEND", "s2suspend"},
	{"ULSUSPEND", "ulsuspend"},
	{"LINHIB0001", "linhib0001"},
}

// tuxOnIceMagic starts the first page of a swap area TuxOnIce hibernated to.
const tuxOnIceMagic = "\xed\xc3\x02\xe9\x98\x56\xe5\x0c"

const (
	swapHeaderOffset = 1024
	swapUUIDOff      = 12 // within the v1 header
	swapLabelOff     = 28
	swapPaddingOff   = 44 // padding[117] (u32) follows the label
)

func probeSwap(r io.ReaderAt) (Superblock, bool, error) {
	sig, err := swapSignature(r)
	if err != nil || sig == "" {
		return Superblock{}, false, err
	}
	sb := Superblock{Type: "swsuspend"}
	switch sig {
	case "SWAP-SPACE":
		// Swap v0 has no header for a label or UUID.
		return Superblock{Type: "swap", Version: "0"}, true, nil
	case "SWAPSPACE2":
		sb = Superblock{Type: "swap", Version: "1"}
	default:
		sb.Hibernation = sig
		for _, h := range hibernationSigs {
			if h.sig == sig {
				sb.Version = h.version
			}
		}
		if sig == tuxOnIceMagic {
			sb.Hibernation, sb.Version = "TuxOnIce", "tuxonice"
		}
	}
	hdr := make([]byte, swapPaddingOff+4*34)
	ok, err := readAt(r, hdr, swapHeaderOffset)
	if !ok {
		return sb, err == nil, err
	}
	le := binary.LittleEndian
	if sb.Type == "swap" {
		version, lastPage := le.Uint32(hdr[0:]), le.Uint32(hdr[4:])
		if (version != 1 && version != 0x01000000) || lastPage == 0 {
			return Superblock{}, false, nil
		}
	}
	// Very old mkswap left garbage here; blkid trusts label and UUID only
	// when padding[32] and padding[33] are zero, and so do we.
	if le.Uint64(hdr[swapPaddingOff+4*32:]) == 0 {
		sb.Label = cString(hdr[swapLabelOff : swapLabelOff+16])
		sb.UUID = formatUUID(hdr[swapUUIDOff : swapUUIDOff+16])
	}
	return sb, true, nil
}

// swapSignature returns the swap or hibernation signature at the end of the
// first page, or "" if there is none.
func swapSignature(r io.ReaderAt) (string, error) {
	head := make([]byte, len(tuxOnIceMagic))
	if ok, err := readAt(r, head, 0); err != nil {
		return "", err
	} else if ok && string(head) == tuxOnIceMagic {
		return tuxOnIceMagic, nil
	}
	buf := make([]byte, 10)
	for _, ps := range swapPageSizes {
		ok, err := readAt(r, buf, ps-10)
		if err != nil {
			return "", err
		}
		if !ok {
			break
		}
		s := string(buf)
		if s == "SWAPSPACE2" || s == "SWAP-SPACE" {
			return s, nil
		}
		for _, h := range hibernationSigs {
			if strings.HasPrefix(s, h.sig) {
				return h.sig, nil
			}
		}
	}
	return "", nil
}

// HibernationSignature reports whether the swap area at path holds a
// hibernated system's image, and which signature marks it ("S1SUSPEND",
// "S2SUSPEND", "ULSUSPEND", "LINHIB0001" or "TuxOnIce"). The hibernation
// guard uses it: booting a fresh layer and then resuming that image would
// corrupt the filesystems the hibernated kernel had mounted.
func HibernationSignature(path string) (bool, string, error) {
	return HibernationSignatureAt(path, 0)
}

// HibernationSignatureAt is HibernationSignature for a swap area that
// starts offset bytes into path: a swap file, whose header lies where
// resume_offset= says on the device of the filesystem that holds it.
func HibernationSignatureAt(path string, offset int64) (bool, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, "", fmt.Errorf("check %s for a hibernation image: %w", path, err)
	}
	defer f.Close()
	sig, err := swapSignature(io.NewSectionReader(f, offset, math.MaxInt64-offset))
	if err != nil {
		return false, "", fmt.Errorf("check %s at byte %d for a hibernation image: %w", path, offset, err)
	}
	switch sig {
	case "", "SWAPSPACE2", "SWAP-SPACE":
		return false, "", nil
	case tuxOnIceMagic:
		return true, "TuxOnIce", nil
	}
	return true, sig, nil
}

// vfat: the BIOS parameter block in sector 0. FAT32 keeps its volume id and
// label at 0x43/0x47, FAT12/16 at 0x27/0x2b, each after an extended boot
// signature 0x29. The label in the root directory is not read: mkfs.vfat
// and fatlabel write both.
func probeVfat(r io.ReaderAt) (Superblock, bool, error) {
	buf := make([]byte, 512)
	if ok, err := readAt(r, buf, 0); !ok {
		return Superblock{}, false, err
	}
	le := binary.LittleEndian
	if buf[510] != 0x55 || buf[511] != 0xAA {
		return Superblock{}, false, nil
	}
	// Require the FAT type string mkfs writes, so an MBR's boot code is not
	// mistaken for a BPB.
	fat32 := bytes.HasPrefix(buf[0x52:], []byte("FAT32"))
	if !fat32 && !bytes.HasPrefix(buf[0x36:], []byte("FAT")) {
		return Superblock{}, false, nil
	}
	bps := uint32(le.Uint16(buf[0x0b:]))
	spc := uint32(buf[0x0d])
	reserved := uint32(le.Uint16(buf[0x0e:]))
	nfats := uint32(buf[0x10])
	rootEntries := uint32(le.Uint16(buf[0x11:]))
	total := uint32(le.Uint16(buf[0x13:]))
	if total == 0 {
		total = le.Uint32(buf[0x20:])
	}
	fatSize := uint32(le.Uint16(buf[0x16:]))
	if fatSize == 0 {
		fatSize = le.Uint32(buf[0x24:])
	}
	switch bps {
	case 512, 1024, 2048, 4096:
	default:
		return Superblock{}, false, nil
	}
	if spc == 0 || spc&(spc-1) != 0 || reserved == 0 || nfats == 0 || nfats > 2 || fatSize == 0 {
		return Superblock{}, false, nil
	}
	// The FAT width follows from the cluster count, not from the type
	// string (Microsoft's FAT spec, and blkid's VERSION).
	rootSectors := (rootEntries*32 + bps - 1) / bps
	meta := reserved + nfats*fatSize + rootSectors
	var clusters uint32
	if total > meta {
		clusters = (total - meta) / spc
	}
	sb := Superblock{Type: "vfat"}
	switch {
	case clusters < 4085:
		sb.Version = "FAT12"
	case clusters < 65525:
		sb.Version = "FAT16"
	default:
		sb.Version = "FAT32"
	}
	sigOff, idOff, labelOff := 0x26, 0x27, 0x2b
	if le.Uint16(buf[0x16:]) == 0 {
		sigOff, idOff, labelOff = 0x42, 0x43, 0x47
	}
	if buf[sigOff] == 0x29 {
		id := buf[idOff : idOff+4]
		sb.UUID = fmt.Sprintf("%02X%02X-%02X%02X", id[3], id[2], id[1], id[0])
		label := strings.TrimRight(string(buf[labelOff:labelOff+11]), " \x00")
		if label != "NO NAME" {
			sb.Label = label
		}
	}
	return sb, true, nil
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// formatUUID formats 16 bytes stored in big-endian (RFC 4122 byte) order,
// as btrfs, ext4 and swap store them; an all-zero UUID is no UUID.
func formatUUID(b []byte) string {
	if allZero(b) {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// formatGUID formats a GPT GUID: its first three fields are little-endian
// on disk (UEFI spec, "GUID format"), which is why it differs from
// formatUUID.
func formatGUID(b []byte) string {
	if allZero(b) {
		return ""
	}
	le := binary.LittleEndian
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", le.Uint32(b[0:]), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
