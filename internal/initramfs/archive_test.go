package initramfs

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

func sampleArchive(t *testing.T) *Archive {
	t.Helper()
	a := NewArchive()
	for _, e := range []Entry{
		{Path: "/init", Mode: 0o755, Data: []byte("#!init\n")},
		{Path: "dev/console", Char: true, Major: 5, Minor: 1, Mode: 0o600},
		{Path: "bin/sh", Link: "busybox"},
		{Path: "tmp", Dir: true, Mode: 0o1777},
		{Path: "lib/modules/6.1.0-56-amd64/kernel/fs/btrfs/btrfs.ko", Mode: 0o644, Data: bytes.Repeat([]byte("btrfs"), 1000)},
		{Path: "etc/dockroot/modules.list", Mode: 0o644, Data: []byte("kernel/fs/btrfs/btrfs.ko\n")},
		{Path: "empty", Mode: 0o644},
	} {
		must(t, a.Add(e))
	}
	return a
}

func readCPIO(t *testing.T, data []byte) map[string]cpio.Record {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.EOFReader{RecordReader: cpio.Newc.Reader(bytes.NewReader(data))})
	if err != nil {
		t.Fatalf("read cpio: %v", err)
	}
	out := map[string]cpio.Record{}
	var order []string
	for _, r := range recs {
		if _, dup := out[r.Name]; dup {
			t.Errorf("%s twice in archive", r.Name)
		}
		out[r.Name] = r
		order = append(order, r.Name)
	}
	// Each directory record must precede what it contains: the kernel's
	// unpacker does not create missing parents.
	for i, n := range order {
		if d := filepath.Dir(n); d != "." && slices.Index(order, d) > i {
			t.Errorf("%s comes before its directory %s", n, d)
		}
	}
	return out
}

func content(t *testing.T, r cpio.Record) string {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	must(t, err)
	return string(b)
}

func TestCPIORoundTrip(t *testing.T) {
	data, err := sampleArchive(t).Bytes(None, 1700000000)
	must(t, err)
	recs := readCPIO(t, data)

	want := []string{"bin", "bin/sh", "dev", "dev/console", "empty", "etc", "etc/dockroot", "etc/dockroot/modules.list", "init",
		"lib", "lib/modules", "lib/modules/6.1.0-56-amd64", "lib/modules/6.1.0-56-amd64/kernel", "lib/modules/6.1.0-56-amd64/kernel/fs",
		"lib/modules/6.1.0-56-amd64/kernel/fs/btrfs", "lib/modules/6.1.0-56-amd64/kernel/fs/btrfs/btrfs.ko", "tmp"}
	if got := sortedKeys(recs); !slices.Equal(got, want) {
		t.Fatalf("names = %v\nwant %v", got, want)
	}
	checks := []struct {
		name string
		mode uint64
		body string
	}{
		{"init", cpio.S_IFREG | 0o755, "#!init\n"},
		{"bin/sh", cpio.S_IFLNK | 0o777, "busybox"},
		{"tmp", cpio.S_IFDIR | 0o1777, ""},
		{"lib/modules", cpio.S_IFDIR | 0o755, ""},
		{"dev/console", cpio.S_IFCHR | 0o600, ""},
		{"empty", cpio.S_IFREG | 0o644, ""},
		{"lib/modules/6.1.0-56-amd64/kernel/fs/btrfs/btrfs.ko", cpio.S_IFREG | 0o644, strings.Repeat("btrfs", 1000)},
	}
	for _, c := range checks {
		r := recs[c.name]
		if r.Mode != c.mode {
			t.Errorf("%s mode %#o, want %#o", c.name, r.Mode, c.mode)
		}
		if got := content(t, r); got != c.body {
			t.Errorf("%s content %q, want %q", c.name, got, c.body)
		}
		if r.UID != 0 || r.GID != 0 || r.MTime != 1700000000 {
			t.Errorf("%s uid %d gid %d mtime %d", c.name, r.UID, r.GID, r.MTime)
		}
	}
	if c := recs["dev/console"]; c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", c.Rmajor, c.Rminor)
	}
}

func TestArchiveAddErrors(t *testing.T) {
	a := NewArchive()
	must(t, a.Add(Entry{Path: "etc/x", Data: []byte("1")}))
	for _, e := range []Entry{
		{Path: "etc/x", Data: []byte("2")}, // twice
		{Path: "etc/x/y"},                  // under a file
		{Path: "../escape"},
		{Path: "/"},
	} {
		if err := a.Add(e); err == nil {
			t.Errorf("Add(%q) succeeded", e.Path)
		}
	}
	must(t, a.Add(Entry{Path: "etc", Dir: true, Mode: 0o700})) // explicit dir over an implied one
	if a.entries["etc"].Mode != 0o700 {
		t.Errorf("explicit directory mode not kept")
	}
}

func TestCompression(t *testing.T) {
	a := sampleArchive(t)
	plain, err := a.Bytes(None, 0)
	must(t, err)
	decoders := map[string]func([]byte) ([]byte, error){
		Gzip: func(b []byte) ([]byte, error) {
			r, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		},
		Zstd: func(b []byte) ([]byte, error) {
			r, err := zstd.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, err
			}
			defer r.Close()
			return io.ReadAll(r)
		},
	}
	// The kernel picks the decompressor by these magic bytes
	// (lib/decompress.c compressed_formats).
	magic := map[string][]byte{Gzip: {0x1f, 0x8b}, Zstd: {0x28, 0xb5, 0x2f, 0xfd}, None: []byte("070701")}
	for _, c := range Compressions {
		var buf bytes.Buffer
		raw, packed, err := a.Encode(&buf, c, 0)
		must(t, err)
		if raw != int64(len(plain)) || packed != int64(buf.Len()) {
			t.Errorf("%s: sizes %d/%d, want %d/%d", c, raw, packed, len(plain), buf.Len())
		}
		if !bytes.HasPrefix(buf.Bytes(), magic[c]) {
			t.Errorf("%s: output starts %x", c, buf.Bytes()[:6])
		}
		again, err := a.Bytes(c, 0)
		must(t, err)
		if !bytes.Equal(again, buf.Bytes()) {
			t.Errorf("%s: two encodings of the same archive differ", c)
		}
		if dec := decoders[c]; dec != nil {
			got, err := dec(buf.Bytes())
			if err != nil || !bytes.Equal(got, plain) {
				t.Errorf("%s: decompressed %d bytes, err %v; want the %d-byte cpio", c, len(got), err, len(plain))
			}
			if c == Gzip || c == Zstd {
				checkWithTool(t, c, buf.Bytes(), plain)
			}
		}
	}
	if err := CheckCompression("lz4"); err == nil || !strings.Contains(err.Error(), "gzip, zstd, none") {
		t.Errorf("CheckCompression(lz4) = %v", err)
	}
}

// checkWithTool decompresses with the distribution's own tool, an
// implementation independent of the Go encoder.
func checkWithTool(t *testing.T, c string, packed, plain []byte) {
	t.Helper()
	tool := map[string]string{Gzip: "gzip", Zstd: "zstd"}[c]
	if _, err := exec.LookPath(tool); err != nil {
		t.Logf("%s not installed; skipping the cross-check", tool)
		return
	}
	f := filepath.Join(t.TempDir(), "img")
	must(t, os.WriteFile(f, packed, 0o644))
	out, err := exec.Command(tool, "-dc", f).Output()
	if err != nil || !bytes.Equal(out, plain) {
		t.Errorf("%s -dc: %v (%d bytes, want %d)", tool, err, len(out), len(plain))
	}
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(out)
		list, err := cmd.Output()
		if err != nil || !strings.Contains(string(list), "dev/console\n") {
			t.Errorf("GNU cpio -it: %v\n%s", err, list)
		}
	}
}
