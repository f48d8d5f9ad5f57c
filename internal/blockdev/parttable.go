package blockdev

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// PartitionTable is a disk's GPT or MBR, as far as root= needs it.
type PartitionTable struct {
	Type       string // "gpt" or "dos", as blkid's PTTYPE
	UUID       string // GPT disk GUID, or the MBR disk signature as 8 hex digits
	SectorSize int
	Partitions []Partition
}

// Partition is one used table entry. Number is what the kernel calls PARTN
// (the GPT entry index + 1; for MBR 1-4, logical partitions are not read).
type Partition struct {
	Number     int
	UUID       string // PARTUUID
	Name       string // PARTLABEL (GPT only)
	TypeGUID   string // GPT partition type; for MBR the type byte as "0x83"
	FirstLBA   uint64
	SectorsLen uint64
}

// Lookup returns the partition with PARTN n.
func (t *PartitionTable) Lookup(n int) (Partition, bool) {
	for _, p := range t.Partitions {
		if p.Number == n {
			return p, true
		}
	}
	return Partition{}, false
}

// GPT header fields (UEFI spec 5.3.2).
const (
	gptSig          = "EFI PART"
	gptHdrSizeOff   = 0x0c
	gptHdrCRCOff    = 0x10
	gptDiskGUIDOff  = 0x38
	gptEntriesLBA   = 0x48
	gptNumEntries   = 0x50
	gptEntrySize    = 0x54
	gptEntriesCRC   = 0x58
	gptMinHdrSize   = 92
	gptMaxEntries   = 4096    // far above the 128 every tool writes; bounds the read
	gptMaxArraySize = 1 << 20 // bytes
)

// ReadPartitionTable reads a GPT (with 512- or 4096-byte sectors, primary
// header first, then the backup at the last LBA) or else an MBR. size is
// the device size in bytes. A disk with neither gives nil and no error.
func ReadPartitionTable(r io.ReaderAt, size int64) (*PartitionTable, error) {
	for _, ss := range []int64{512, 4096} {
		t, err := readGPT(r, ss, ss)
		if err != nil || t != nil {
			return t, err
		}
		if size >= 2*ss {
			if t, err := readGPT(r, ss, size/ss*ss-ss); err != nil || t != nil {
				return t, err
			}
		}
	}
	return readMBR(r)
}

// readGPT reads the GPT header at byte offset hdrOff on a disk with sector
// size ss. An absent or corrupt header (bad signature or CRC) gives nil.
func readGPT(r io.ReaderAt, ss, hdrOff int64) (*PartitionTable, error) {
	hdr := make([]byte, ss)
	if ok, err := readAt(r, hdr, hdrOff); !ok {
		return nil, err
	}
	if string(hdr[:8]) != gptSig {
		return nil, nil
	}
	le := binary.LittleEndian
	hdrSize := le.Uint32(hdr[gptHdrSizeOff:])
	if hdrSize < gptMinHdrSize || int64(hdrSize) > ss {
		return nil, nil
	}
	h := append([]byte(nil), hdr[:hdrSize]...)
	want := le.Uint32(h[gptHdrCRCOff:])
	le.PutUint32(h[gptHdrCRCOff:], 0)
	if crc32.ChecksumIEEE(h) != want {
		return nil, nil
	}
	n := le.Uint32(hdr[gptNumEntries:])
	esize := le.Uint32(hdr[gptEntrySize:])
	if n == 0 || n > gptMaxEntries || esize < 128 || esize%8 != 0 || uint64(n)*uint64(esize) > gptMaxArraySize {
		return nil, nil
	}
	entries := make([]byte, n*esize)
	ok, err := readAt(r, entries, int64(le.Uint64(hdr[gptEntriesLBA:]))*ss)
	if !ok {
		return nil, err
	}
	if crc32.ChecksumIEEE(entries) != le.Uint32(hdr[gptEntriesCRC:]) {
		return nil, nil
	}
	t := &PartitionTable{Type: "gpt", UUID: formatGUID(hdr[gptDiskGUIDOff : gptDiskGUIDOff+16]), SectorSize: int(ss)}
	for i := uint32(0); i < n; i++ {
		e := entries[i*esize : (i+1)*esize]
		if allZero(e[0:16]) { // type GUID zero: unused entry
			continue
		}
		first, last := le.Uint64(e[0x20:]), le.Uint64(e[0x28:])
		t.Partitions = append(t.Partitions, Partition{
			Number:     int(i) + 1,
			TypeGUID:   formatGUID(e[0:16]),
			UUID:       formatGUID(e[0x10:0x20]),
			Name:       utf16Name(e[0x38:0x80]),
			FirstLBA:   first,
			SectorsLen: last - first + 1,
		})
	}
	return t, nil
}

// utf16Name decodes a GPT partition name: 36 UTF-16LE code units, NUL-ended.
func utf16Name(b []byte) string {
	units := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u := binary.LittleEndian.Uint16(b[i:])
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	return string(utf16.Decode(units))
}

// readMBR reads a DOS partition table. Its PARTUUIDs are
// "<disk signature>-<partition number>" in lowercase hex, the form the
// kernel's root=PARTUUID= and blkid both use. A protective MBR (type 0xEE)
// belongs to a GPT that did not validate, so it yields no table.
func readMBR(r io.ReaderAt) (*PartitionTable, error) {
	buf := make([]byte, 512)
	if ok, err := readAt(r, buf, 0); !ok {
		return nil, err
	}
	if buf[510] != 0x55 || buf[511] != 0xAA {
		return nil, nil
	}
	le := binary.LittleEndian
	sig := le.Uint32(buf[0x1b8:])
	t := &PartitionTable{Type: "dos", UUID: fmt.Sprintf("%08x", sig), SectorSize: 512}
	for i := 0; i < 4; i++ {
		e := buf[0x1be+16*i : 0x1be+16*(i+1)]
		boot, ptype := e[0], e[4]
		if boot != 0 && boot != 0x80 {
			return nil, nil // not a partition table: a FAT boot sector or boot code
		}
		if ptype == 0xee {
			return nil, nil
		}
		if ptype == 0 {
			continue
		}
		t.Partitions = append(t.Partitions, Partition{
			Number:     i + 1,
			UUID:       fmt.Sprintf("%08x-%02x", sig, i+1),
			TypeGUID:   fmt.Sprintf("0x%02x", ptype),
			FirstLBA:   uint64(le.Uint32(e[8:])),
			SectorsLen: uint64(le.Uint32(e[12:])),
		})
	}
	if len(t.Partitions) == 0 {
		return nil, nil
	}
	return t, nil
}
