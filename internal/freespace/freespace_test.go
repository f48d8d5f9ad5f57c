package freespace

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/testenv"
)

func TestHuman(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{64 << 20, "64.0 MiB"},
		{256 << 20, "256 MiB"},
		{20 << 30, "20.0 GiB"},
		{3 << 40, "3.0 TiB"},
		{^uint64(0), "16.0 EiB"},
	} {
		if got := Human(tc.n); got != tc.want {
			t.Errorf("Human(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestWarning(t *testing.T) {
	if w := Warning("/t", Space{Free: WarnFree, Total: 1 << 30}); w != "" {
		t.Errorf("warning at exactly WarnFree: %q", w)
	}
	w := Warning("/t", Space{Free: 100 << 20, Total: 1 << 30})
	for _, want := range []string{"/t", "only 100 MiB free of 1.0 GiB", "dockroot gc"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q lacks %q", w, want)
		}
	}
}

func TestCheckFreeSpaceAnyFilesystem(t *testing.T) {
	dir := t.TempDir()
	sp, err := CheckFreeSpace(dir, 0)
	if err != nil || sp.Total == 0 {
		t.Fatalf("CheckFreeSpace(%s, 0) = %+v, %v", dir, sp, err)
	}
	_, err = CheckFreeSpace(dir, ^uint64(0))
	var le *LowSpaceError
	if !errors.As(err, &le) || !errors.Is(err, ErrLowSpace) || le.Need != ^uint64(0) {
		t.Fatalf("CheckFreeSpace(need=max) = %v, want *LowSpaceError", err)
	}
	if _, err := CheckFreeSpace(filepath.Join(dir, "absent"), 0); err == nil || !strings.Contains(err.Error(), "statfs") {
		t.Errorf("CheckFreeSpace(absent) = %v", err)
	}
}

// TestCheckFreeSpaceFullBtrfs fills a small loop btrfs and checks that the
// check sees it, against what `btrfs filesystem usage` reports as free.
func TestCheckFreeSpaceFullBtrfs(t *testing.T) {
	testenv.RequireRoot(t, "btrfs")
	fs := testenv.NewBtrfs(t, 256, "")
	sp, err := CheckFreeSpace(fs.Mnt, MinFree)
	if err != nil || !sp.Btrfs {
		t.Fatalf("empty 256 MiB btrfs: %+v, %v", sp, err)
	}
	// Fill with incompressible data until less than MinFree is left.
	f, err := os.Create(filepath.Join(fs.Mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7919 + i>>8)
	}
	for {
		if _, err := f.Write(buf); err != nil {
			break // ENOSPC: full
		}
		f.Sync()
		if sp, _ := Stat(fs.Mnt); sp.Free < MinFree/2 {
			break
		}
	}
	f.Close()
	sp, err = CheckFreeSpace(fs.Mnt, MinFree)
	var le *LowSpaceError
	if !errors.As(err, &le) {
		t.Fatalf("full btrfs (%s free): CheckFreeSpace = %v, want *LowSpaceError", Human(sp.Free), err)
	}
	msg := err.Error()
	if strings.Contains(msg, "dockroot gc") {
		t.Errorf("message gives advice; the boot adds it once: %s", msg)
	}
	for _, want := range []string{fs.Mnt, Human(sp.Free) + " free", "64.0 MiB", "nothing was changed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if w := Warning(fs.Mnt, sp); w == "" {
		t.Error("no warning on a full filesystem")
	}
	usage := testenv.Run(t, "btrfs", "filesystem", "usage", "-b", fs.Mnt)
	var statfsFree uint64
	for _, line := range strings.Split(usage, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Free (statfs, df):"); ok {
			statfsFree, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	if statfsFree != sp.Free {
		t.Errorf("Free = %d, btrfs filesystem usage says %d:\n%s", sp.Free, statfsFree, usage)
	}
	t.Log(msg)
}
