package initramfs

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Member is one record of an initramfs someone else built.
type Member struct {
	Path string // relative, "/"-separated, no leading "/" or "./"
	Mode uint32 // the cpio mode: type and permission bits
	Size int64
}

// Regular says whether the member is a regular file.
func (m Member) Regular() bool { return m.Mode&0o170000 == 0o100000 }

// Listing is what an initramfs holds: its members in archive order (a
// later one with the same path replaces an earlier one when the kernel
// unpacks it), and the compression of each cpio stream ("none" for an
// uncompressed one, such as an early-microcode archive put first).
type Listing struct {
	Members []Member
	Streams []string
}

// ListFile reads the initramfs in file; see List.
func ListFile(file string) (*Listing, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	l, err := List(f)
	if err != nil {
		return nil, fmt.Errorf("read initramfs %s: %w", file, err)
	}
	return l, nil
}

// List reads an initramfs the way the kernel unpacks one
// (init/initramfs.c, unpack_to_rootfs): newc cpio archives one after the
// other, each uncompressed or compressed with any of the kernel's
// decompressors (gzip, zstd, xz, lzma, bzip2, lz4), NUL padding between
// them. Generators put an uncompressed early-microcode archive first and
// the compressed main archive after it (initramfs-tools, dracut,
// mkinitcpio all do).
//
// A gzip member ends where its trailer says, so archives after it are
// read too; any other compressed stream is taken to run to the end of the
// file, as the generators write it.
func List(r io.Reader) (*Listing, error) {
	l := &Listing{}
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64 // of br, for messages
	for {
		n, err := skipNUL(br)
		off += n
		if err == io.EOF {
			break
		}
		if err != nil {
			return l, err
		}
		magic, _ := br.Peek(6)
		if isCPIO(magic) {
			c := &countReader{r: br}
			if err := l.readArchive(c); err != nil {
				return l, fmt.Errorf("cpio archive at offset %d: %w", off, err)
			}
			off += c.n
			l.Streams = append(l.Streams, None)
			continue
		}
		name, dec, err := decompressor(br, magic)
		if err != nil {
			return l, fmt.Errorf("at offset %d: %w", off, err)
		}
		l.Streams = append(l.Streams, name)
		if err := l.readArchives(dec); err != nil {
			return l, fmt.Errorf("%s stream at offset %d: %w", name, off, err)
		}
		if name != Gzip {
			break
		}
	}
	if len(l.Members) == 0 {
		return l, errors.New("no cpio archive in it")
	}
	return l, nil
}

// readArchives reads the cpio archives of one decompressed stream.
func (l *Listing) readArchives(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	for {
		n, err := skipNUL(br)
		off += n
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		magic, _ := br.Peek(6)
		if !isCPIO(magic) {
			return fmt.Errorf("at offset %d of the decompressed data: % x is not a newc cpio header", off, magic)
		}
		c := &countReader{r: br}
		if err := l.readArchive(c); err != nil {
			return fmt.Errorf("cpio archive at offset %d of the decompressed data: %w", off, err)
		}
		off += c.n
	}
}

const trailer = "TRAILER!!!"

// readArchive reads one newc archive up to its trailer. newc
// (Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte
// header, "070701" or "070702" then 13 8-digit hex fields, the name with
// its NUL, padded to 4 bytes, then the data, padded to 4 bytes.
func (l *Listing) readArchive(c *countReader) error {
	var hdr [110]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return fmt.Errorf("header at offset %d: %w", c.n, unexpected(err))
		}
		if !isCPIO(hdr[:6]) {
			return fmt.Errorf("header at offset %d: % x is not a newc cpio magic", c.n-110, hdr[:6])
		}
		var f [13]uint64
		for i := range f {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return fmt.Errorf("header at offset %d: field %d %q is not hex", c.n-110, i, hdr[6+8*i:14+8*i])
			}
			f[i] = v
		}
		mode, size, namesize := uint32(f[1]), int64(f[6]), int64(f[11])
		if namesize == 0 || namesize > 4096 {
			return fmt.Errorf("header at offset %d: name size %d", c.n-110, namesize)
		}
		name := make([]byte, namesize)
		if _, err := io.ReadFull(c, name); err != nil {
			return fmt.Errorf("name at offset %d: %w", c.n, unexpected(err))
		}
		if err := c.align(); err != nil {
			return err
		}
		p := string(bytes.TrimRight(name, "\x00"))
		if p == trailer {
			return nil
		}
		if _, err := io.CopyN(io.Discard, c, size); err != nil {
			return fmt.Errorf("data of %s: %w", p, unexpected(err))
		}
		if err := c.align(); err != nil {
			return err
		}
		p = strings.TrimPrefix(path.Clean("/"+p), "/")
		if p != "" {
			l.Members = append(l.Members, Member{Path: p, Mode: mode, Size: size})
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func isCPIO(magic []byte) bool {
	return len(magic) == 6 && (string(magic) == "070701" || string(magic) == "070702")
}

// skipNUL discards NUL bytes and returns how many; io.EOF when nothing
// but NULs is left.
func skipNUL(br *bufio.Reader) (int64, error) {
	var n int64
	for {
		b, err := br.ReadByte()
		if err != nil {
			return n, err
		}
		if b != 0 {
			return n, br.UnreadByte()
		}
		n++
	}
}

// decompressor recognises a compressed stream by its magic, as the
// kernel does (lib/decompress.c, compressed_formats).
func decompressor(br *bufio.Reader, magic []byte) (string, io.Reader, error) {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		// The standard library's reader, given a byte reader, reads no
		// further than the member's trailer.
		zr, err := gzip.NewReader(br)
		if err != nil {
			return Gzip, nil, err
		}
		zr.Multistream(false)
		return Gzip, zr, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return Zstd, nil, err
		}
		return Zstd, zr.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		zr, err := xz.NewReader(br)
		return "xz", zr, err
	case bytes.HasPrefix(magic, []byte{0x5d, 0, 0}):
		zr, err := lzma.NewReader(br)
		return "lzma", zr, err
	case bytes.HasPrefix(magic, []byte("BZh")):
		return "bzip2", bzip2.NewReader(br), nil
	case bytes.HasPrefix(magic, []byte{0x02, 0x21, 0x4c, 0x18}), bytes.HasPrefix(magic, []byte{0x04, 0x22, 0x4d, 0x18}):
		return "lz4", lz4.NewReader(br), nil
	}
	return "", nil, fmt.Errorf("% x is neither a newc cpio archive nor a compression the kernel unpacks (gzip, zstd, xz, lzma, bzip2, lz4)", magic)
}

// countReader counts what is read through it, for the 4-byte alignment of
// newc, which counts from the start of the archive.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countReader) align() error {
	if pad := (4 - c.n%4) % 4; pad > 0 {
		if _, err := io.CopyN(io.Discard, c, pad); err != nil {
			return fmt.Errorf("padding at offset %d: %w", c.n, unexpected(err))
		}
	}
	return nil
}

// KernelVersions lists the kernel releases whose modules the initramfs
// holds (lib/modules/KVER or usr/lib/modules/KVER), in order of first
// appearance.
func (l *Listing) KernelVersions() []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range l.Members {
		rest, ok := strings.CutPrefix(m.Path, "usr/")
		if !ok {
			rest = m.Path
		}
		rest, ok = strings.CutPrefix(rest, "lib/modules/")
		if !ok {
			continue
		}
		v, _, _ := strings.Cut(rest, "/")
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
