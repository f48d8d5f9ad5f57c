package toplayer

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/testenv"
	"golang.org/x/sys/unix"
)

// BenchmarkApply measures Apply over a fresh destination each iteration.
// Run with `go test -bench Apply -benchtime 3x ./toplayer`.
func BenchmarkApply(b *testing.B) {
	b.Run("10k-small-files", func(b *testing.B) {
		src := b.TempDir()
		for d := 0; d < 100; d++ {
			dir := filepath.Join(src, fmt.Sprintf("d%03d", d))
			if err := os.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < 100; i++ {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte(fmt.Sprintf("file %d/%d\n", d, i)), 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}
		benchApply(b, src)
	})
	b.Run("4-large-files", func(b *testing.B) {
		src := b.TempDir()
		buf := make([]byte, 32<<20)
		if _, err := rand.Read(buf); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("big%d", i)), buf, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(4 * len(buf)))
		benchApply(b, src)
	})
}

func benchApply(b *testing.B, src string) {
	parent := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root := filepath.Join(parent, fmt.Sprintf("root%d", i))
		if err := os.Mkdir(root, 0o755); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := Apply(root, src); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(root); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkApplyBtrfs is the boot's case, root tier: the destination is a
// fresh writable snapshot of an "image" subvolume on a loop btrfs, as
// Layers.Prepare makes it, and the top layer is 10k small files with the
// mix a machine's top layer holds (modes, owners, xattrs, symlinks, hard
// links), on the same btrfs (reflinks) or on another filesystem (copies).
// Each iteration copies the tree with Apply and with `cp -a SRC/. DST/`,
// alternating which goes first, over fresh snapshots; ns/op is Apply's
// time, and the cp-a-ns/op and apply/cp-a metrics give the comparison.
// Snapshots, deletions and a sync between copies are untimed.
func BenchmarkApplyBtrfs(b *testing.B) {
	testenv.RequireRoot(b, "cp")
	fs := testenv.NewBtrfs(b, 1024, "")
	image := filepath.Join(fs.Mnt, "image")
	if err := btrfs.CreateSubvolume(image); err != nil {
		b.Fatal(err)
	}
	for _, d := range []string{"etc", "usr/bin", "srv"} {
		for i := 0; i < 50; i++ {
			p := filepath.Join(image, d, fmt.Sprintf("image-file-%d", i))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("image\n"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	sources := []struct{ name, dir string }{
		{"src=btrfs", filepath.Join(fs.Mnt, "src")},
		{"src=other-fs", filepath.Join(b.TempDir(), "src")},
	}
	for _, s := range sources {
		if err := writeBenchTree(s.dir, 10000); err != nil {
			b.Fatal(err)
		}
	}
	unix.Sync() // the trees' own writeback must not land in a timed copy
	dst := filepath.Join(fs.Mnt, "dst")
	copyOnce := func(b *testing.B, src string, apply bool) time.Duration {
		if err := btrfs.Snapshot(image, fs.Mnt, "dst", false); err != nil {
			b.Fatal(err)
		}
		if err := btrfs.Sync(fs.Mnt); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if apply {
			if _, err := Apply(dst, src); err != nil {
				b.Fatal(err)
			}
		} else if out, err := exec.Command("cp", "-a", src+"/.", dst+"/").CombinedOutput(); err != nil {
			b.Fatalf("cp -a: %v\n%s", err, out)
		}
		took := time.Since(start)
		if err := btrfs.DeleteRecursive(dst); err != nil {
			b.Fatal(err)
		}
		if err := btrfs.Sync(fs.Mnt); err != nil {
			b.Fatal(err)
		}
		return took
	}
	for _, s := range sources {
		b.Run("10k-small-files/"+s.name, func(b *testing.B) {
			var apply, cp time.Duration
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				first := i%2 == 0
				for _, useApply := range []bool{first, !first} {
					d := copyOnce(b, s.dir, useApply)
					if useApply {
						apply += d
					} else {
						cp += d
					}
				}
			}
			b.ReportMetric(float64(apply.Nanoseconds())/float64(b.N), "ns/op")
			b.ReportMetric(float64(cp.Nanoseconds())/float64(b.N), "cp-a-ns/op")
			b.ReportMetric(float64(apply)/float64(cp), "apply/cp-a")
		})
	}
}

// writeBenchTree writes n small files (100 B – 4 KB) over 100 directories:
// every 50th setuid, setgid or 0600, every 10th owned by 1000:100, every
// 20th with a user. xattr, every 100th a symlink and another a hard link,
// fixed mtimes.
func writeBenchTree(dir string, n int) error {
	pool := make([]byte, 4096)
	if _, err := rand.Read(pool); err != nil {
		return err
	}
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for i := 0; i < n; i++ {
		d := filepath.Join(dir, "srv", fmt.Sprintf("d%03d", i%100))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		p := filepath.Join(d, fmt.Sprintf("f%05d", i))
		switch i % 100 {
		case 7:
			if err := os.Symlink(fmt.Sprintf("../d%03d/f%05d", (i+1)%100, i+1), p); err != nil {
				return err
			}
			continue
		case 9:
			if err := os.Link(filepath.Join(dir, "srv", fmt.Sprintf("d%03d", (i-1)%100), fmt.Sprintf("f%05d", i-1)), p); err != nil {
				return err
			}
			continue
		}
		mode := os.FileMode(0o644)
		switch i % 50 {
		case 1:
			mode = 0o4755
		case 2:
			mode = 0o600
		case 3:
			mode = 0o2755
		}
		if err := os.WriteFile(p, pool[:100+i*37%3900], 0o600); err != nil {
			return err
		}
		if i%10 == 4 {
			if err := os.Chown(p, 1000, 100); err != nil {
				return err
			}
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
		if i%20 == 5 {
			if err := unix.Lsetxattr(p, "user.bench", []byte(fmt.Sprint(i)), 0); err != nil {
				return err
			}
		}
		if err := os.Chtimes(p, when, when.Add(time.Duration(i)*time.Second)); err != nil {
			return err
		}
	}
	return nil
}
