package initramfs

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// cpioOf is a real newc archive (the writer the builder uses) of paths; a
// path ending in "/" is a directory.
func cpioOf(t *testing.T, compression string, paths ...string) []byte {
	t.Helper()
	a := NewArchive()
	for _, p := range paths {
		e := Entry{Path: strings.TrimSuffix(p, "/"), Mode: 0o755, Data: []byte("data of " + p)}
		if strings.HasSuffix(p, "/") {
			e.Dir, e.Data = true, nil
		}
		if err := a.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	b, err := a.Bytes(compression, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func compress(t *testing.T, kind string, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch kind {
	case "xz":
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(raw)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case "lz4":
		// initramfs-tools' COMPRESS=lz4 writes the legacy frame (lz4 -l).
		w := lz4.NewWriter(&buf)
		if err := w.Apply(lz4.LegacyOption(true)); err != nil {
			t.Fatal(err)
		}
		w.Write(raw)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("no compressor %s", kind)
	}
	return buf.Bytes()
}

// padTo512 pads an early archive with NULs, as the generators do before
// appending the main one.
func padTo512(b []byte) []byte {
	return append(b, make([]byte, (512-len(b)%512)%512)...)
}

func TestList(t *testing.T) {
	main := []string{"init", "usr/lib/dockroot/dockroot-init", "scripts/local-premount/dockroot", "usr/lib/modules/6.1.0-57-amd64/kernel/fs/btrfs/btrfs.ko"}
	micro := []string{"kernel/x86/microcode/GenuineIntel.bin"}
	raw := cpioOf(t, None, main...)
	cases := []struct {
		name    string
		data    []byte
		streams []string
		paths   []string
	}{
		{"uncompressed", raw, []string{None}, main},
		{"gzip", cpioOf(t, Gzip, main...), []string{Gzip}, main},
		{"zstd", cpioOf(t, Zstd, main...), []string{Zstd}, main},
		{"xz", compress(t, "xz", raw), []string{"xz"}, main},
		{"lz4 legacy", compress(t, "lz4", raw), []string{"lz4"}, main},
		{"microcode then zstd", append(padTo512(cpioOf(t, None, micro...)), cpioOf(t, Zstd, main...)...), []string{None, Zstd}, append(slices.Clone(micro), main...)},
		{"microcode then gzip then gzip", append(append(padTo512(cpioOf(t, None, micro...)), cpioOf(t, Gzip, main[:2]...)...), cpioOf(t, Gzip, main[2:]...)...), []string{None, Gzip, Gzip}, append(slices.Clone(micro), main...)},
		{"two archives in one stream", compress(t, "xz", append(padTo512(cpioOf(t, None, micro...)), raw...)), []string{"xz"}, append(slices.Clone(micro), main...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := List(bytes.NewReader(c.data))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(l.Streams, c.streams) {
				t.Errorf("streams %v; want %v", l.Streams, c.streams)
			}
			var files []string
			for _, m := range l.Members {
				if m.Regular() {
					files = append(files, m.Path)
				}
			}
			want := slices.Clone(c.paths)
			slices.Sort(want)
			slices.Sort(files)
			if !slices.Equal(files, want) {
				t.Errorf("files %v; want %v", files, want)
			}
			if kv := l.KernelVersions(); !slices.Equal(kv, []string{"6.1.0-57-amd64"}) {
				t.Errorf("KernelVersions %v", kv)
			}
		})
	}

	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no cpio archive"},
		{"not an initramfs", []byte("#!/bin/sh\necho hello\n"), "neither a newc cpio archive nor a compression"},
		{"truncated", raw[:len(raw)-200], "unexpected EOF"},
		{"compressed garbage", compress(t, "xz", []byte("hello, world")), "not a newc cpio header"},
	} {
		if _, err := List(bytes.NewReader(c.data)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error with %q", c.name, err, c.want)
		}
	}
}
