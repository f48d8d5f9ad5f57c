package initramfs

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/dockroot/dockroot/internal/testenv"
)

// fakeModule returns a minimal ELF relocatable object for machine with a
// .modinfo section holding the given "key=value" strings, which is all of a
// kernel module this package reads.
func fakeModule(t testing.TB, machine elf.Machine, modinfo ...string) []byte {
	t.Helper()
	info := []byte(strings.Join(modinfo, "\x00") + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	infoOff := uint64(64)
	strOff := infoOff + uint64(len(info))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7

	var buf bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(machine), Version: 1,
		Shoff: shOff, Ehsize: 64, Shentsize: 64, Shnum: 3, Shstrndx: 2,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	must(t, binary.Write(&buf, binary.LittleEndian, hdr))
	buf.Write(info)
	buf.Write(shstr)
	buf.Write(make([]byte, shOff-uint64(buf.Len())))
	secs := []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Off: infoOff, Size: uint64(len(info)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1},
	}
	must(t, binary.Write(&buf, binary.LittleEndian, secs))
	return buf.Bytes()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// compressAs compresses data the way the kernel's modules_install does for
// the file name's suffix (xz with CRC32, as `xz --check=crc32`).
func compressAs(t testing.TB, name string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch {
	case strings.HasSuffix(name, ".xz"):
		w, err := xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(&buf)
		must(t, err)
		_, err = w.Write(data)
		must(t, err)
		must(t, w.Close())
	case strings.HasSuffix(name, ".zst"):
		w, err := zstd.NewWriter(&buf)
		must(t, err)
		_, err = w.Write(data)
		must(t, err)
		must(t, w.Close())
	case strings.HasSuffix(name, ".gz"):
		w := gzip.NewWriter(&buf)
		_, err := w.Write(data)
		must(t, err)
		must(t, w.Close())
	default:
		return data
	}
	return buf.Bytes()
}

// writeFiles creates files (path -> contents) under dir.
func writeFiles(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, data, 0o644))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

var (
	standInOnce sync.Once
	standInPath string
	standInErr  error
)

// standInInit builds testenv.StandInInit once per test binary; TestMain
// removes it.
func standInInit(t testing.TB) string {
	t.Helper()
	standInOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dockroot-standin-")
		if err != nil {
			standInErr = err
			return
		}
		standInPath, standInErr = testenv.StandInInit(dir)
		if standInErr != nil {
			os.RemoveAll(dir)
		}
	})
	if standInErr != nil {
		t.Fatal(standInErr)
	}
	return standInPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if standInPath != "" {
		os.RemoveAll(filepath.Dir(standInPath))
	}
	os.Exit(code)
}

// fakeExecutable is the smallest static ELF executable for machine: a
// header with no program headers (so no PT_INTERP), which is all the
// builder reads of an init binary to choose it by architecture.
func fakeExecutable(t testing.TB, machine elf.Machine) []byte {
	t.Helper()
	hdr := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: 1, Ehsize: 64}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var buf bytes.Buffer
	must(t, binary.Write(&buf, binary.LittleEndian, hdr))
	return buf.Bytes()
}
