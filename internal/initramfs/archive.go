package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// Entry is one file of the initramfs. Exactly one kind applies: a directory,
// a regular file (Data), a symlink (Link) or a character device (Dev).
type Entry struct {
	Path  string // relative, "/"-separated, no leading '/'
	Mode  uint32 // permission bits (and setuid/sticky)
	Dir   bool
	Data  []byte
	Link  string
	Char  bool
	Major uint32
	Minor uint32
}

// Archive is the initramfs contents, keyed by path.
type Archive struct {
	entries map[string]Entry
}

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]Entry{}} }

// Add records e, creating its parent directories (mode 0755) as needed.
// The Linux initramfs unpacker does not create missing parents (init/initramfs.c
// do_name), so every directory must have its own record.
func (a *Archive) Add(e Entry) error {
	p := path.Clean(strings.TrimLeft(e.Path, "/"))
	if p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("initramfs path %q is not inside the archive", e.Path)
	}
	e.Path = p
	if old, ok := a.entries[p]; ok && !(old.Dir && e.Dir) {
		return fmt.Errorf("initramfs path /%s added twice", p)
	}
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		if old, ok := a.entries[d]; ok {
			if !old.Dir {
				return fmt.Errorf("initramfs path /%s needs /%s to be a directory", p, d)
			}
			continue
		}
		a.entries[d] = Entry{Path: d, Dir: true, Mode: 0o755}
	}
	a.entries[p] = e
	return nil
}

// Paths returns the archive's paths in the order they are written.
func (a *Archive) Paths() []string {
	ps := make([]string, 0, len(a.entries))
	for p := range a.entries {
		ps = append(ps, p)
	}
	// Byte order puts every directory before what it contains, since a
	// parent is a prefix of its children.
	sort.Strings(ps)
	return ps
}

// WriteCPIO writes the archive in the newc format the kernel unpacks, with
// everything that varies between builds fixed: owner root, mtime given
// (0 or SOURCE_DATE_EPOCH), inode numbers in path order.
func (a *Archive) WriteCPIO(w io.Writer, mtime uint64) error {
	cw := cpio.Newc.Writer(w)
	for i, p := range a.Paths() {
		e := a.entries[p]
		info := cpio.Info{
			Ino:   uint64(i + 1),
			Name:  p,
			MTime: mtime,
			NLink: 1,
			Mode:  uint64(e.Mode & 0o7777),
		}
		var rec cpio.Record
		switch {
		case e.Dir:
			info.Mode |= cpio.S_IFDIR
			info.NLink = 2
			rec = cpio.Record{Info: info}
		case e.Link != "":
			info.Mode = cpio.S_IFLNK | 0o777
			rec = cpio.StaticRecord([]byte(e.Link), info)
		case e.Char:
			info.Mode |= cpio.S_IFCHR
			info.Rmajor, info.Rminor = uint64(e.Major), uint64(e.Minor)
			rec = cpio.Record{Info: info}
		default:
			info.Mode |= cpio.S_IFREG
			rec = cpio.StaticRecord(e.Data, info)
		}
		if err := cw.WriteRecord(rec); err != nil {
			return fmt.Errorf("write cpio record %s: %w", p, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("write cpio trailer: %w", err)
	}
	return nil
}

// Compression names accepted by Options.Compress.
const (
	Gzip = "gzip"
	Zstd = "zstd"
	None = "none"
)

// Compressions lists the accepted compression names.
var Compressions = []string{Gzip, Zstd, None}

// CheckCompression says whether name is an accepted compression.
func CheckCompression(name string) error {
	for _, c := range Compressions {
		if c == name {
			return nil
		}
	}
	return fmt.Errorf("unknown compression %q: use one of %s", name, strings.Join(Compressions, ", "))
}

// compressor wraps w so that what is written to it reaches w compressed.
// The kernel unpacks all three (CONFIG_RD_GZIP, CONFIG_RD_ZSTD; uncompressed
// always) and recognises them by their magic bytes.
func compressor(name string, w io.Writer) (io.WriteCloser, error) {
	switch name {
	case Gzip:
		// No name and mtime 0 in the header, so equal inputs give equal files.
		// The default level: level 9 takes ten times as long for 2-3% less
		// on a module-heavy archive.
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case Zstd:
		// One frame with the default window (8 MB at this level), well within
		// the kernel decompressor's limit (lib/decompress_unzstd.c accepts up
		// to ZSTD_WINDOWSIZE_MAX).
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	case None:
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q: use one of %s", name, strings.Join(Compressions, ", "))
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// countingWriter counts the bytes that pass through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Encode writes the archive as a compressed cpio to w and returns the
// uncompressed and compressed sizes.
func (a *Archive) Encode(w io.Writer, compression string, mtime uint64) (raw, packed int64, err error) {
	out := &countingWriter{w: w}
	cw, err := compressor(compression, out)
	if err != nil {
		return 0, 0, err
	}
	in := &countingWriter{w: cw}
	if err := a.WriteCPIO(in, mtime); err != nil {
		cw.Close()
		return 0, 0, err
	}
	if err := cw.Close(); err != nil {
		return 0, 0, fmt.Errorf("finish %s compression: %w", compression, err)
	}
	return in.n, out.n, nil
}

// Bytes is Encode into memory, for tests and small archives.
func (a *Archive) Bytes(compression string, mtime uint64) ([]byte, error) {
	var buf bytes.Buffer
	_, _, err := a.Encode(&buf, compression, mtime)
	return buf.Bytes(), err
}
