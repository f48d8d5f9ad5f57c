package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/toplayer"
	"golang.org/x/sys/unix"
)

// CopyRow compares toplayer.Apply with `cp -a` on one source tree copied
// over a fresh snapshot of an image, and checks the results agree.
type CopyRow struct {
	Tree          string   `json:"tree"`   // "10k small files", "4 large files"
	Source        string   `json:"source"` // "btrfs (same filesystem)" or "tmpfs"
	Files         int      `json:"files"`
	Bytes         int64    `json:"bytes"`
	Dockroot      Stat     `json:"dockroot"`
	CpA           Stat     `json:"cp_a"`
	Ratio         float64  `json:"ratio"`               // dockroot median / cp -a median
	MetadataEqual bool     `json:"metadata_equal"`      // on every path below the root
	RootNote      string   `json:"root_note,omitempty"` // how / itself differs, if it does
	Compared      int      `json:"paths_compared"`
	Diffs         []string `json:"diffs,omitempty"` // the first few differences
}

// copyTree describes a generated top layer.
type copyTree struct {
	name  string
	small int   // small files (100 B – 4 KB) with the attribute mix
	large int   // large files
	size  int64 // bytes per large file
}

// writeCopyTree writes t under dir: small files spread over 100
// directories with a mix of what a top layer holds (setuid and private
// modes, other owners, xattrs, symlinks, hard links, fixed mtimes), or a
// few large random files. It returns the files and bytes written.
func writeCopyTree(dir string, t copyTree) (files int, bytes int64, err error) {
	rng := rand.New(rand.NewPCG(1, 2))
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	pool := make([]byte, 4096)
	for i := range pool {
		pool[i] = byte(rng.IntN(256))
	}
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return 0, 0, err
	}
	if err := os.WriteFile(filepath.Join(etc, "bench-copy.conf"), []byte("merged into the image's /etc\n"), 0o644); err != nil {
		return 0, 0, err
	}
	files++
	for i := 0; i < t.small; i++ {
		d := filepath.Join(dir, "srv", "copy", fmt.Sprintf("d%03d", i%100))
		if i < 100 {
			mode := os.FileMode(0o755)
			if i%10 == 3 {
				mode = 0o750
			}
			if err := os.MkdirAll(d, mode); err != nil {
				return files, bytes, err
			}
			if err := os.Chmod(d, mode); err != nil {
				return files, bytes, err
			}
		}
		p := filepath.Join(d, fmt.Sprintf("f%05d", i))
		switch {
		case i%100 == 7:
			if err := os.Symlink(fmt.Sprintf("../d%03d/f%05d", (i+1)%100, i+1), p); err != nil {
				return files, bytes, err
			}
			if err := unix.Lchown(p, 1000, 1000); err != nil {
				return files, bytes, err
			}
			files++
			continue
		case i%100 == 9:
			prev := filepath.Join(dir, "srv", "copy", fmt.Sprintf("d%03d", (i-1)%100), fmt.Sprintf("f%05d", i-1))
			if err := os.Link(prev, p); err != nil {
				return files, bytes, err
			}
			files++
			continue
		}
		n := 100 + rng.IntN(3900)
		mode := os.FileMode(0o644)
		switch i % 50 {
		case 1:
			mode = 0o4755
		case 2:
			mode = 0o600
		case 3:
			mode = 0o2755
		}
		if err := os.WriteFile(p, pool[:n], 0o600); err != nil {
			return files, bytes, err
		}
		if i%10 == 4 {
			if err := os.Chown(p, 1000, 100); err != nil {
				return files, bytes, err
			}
		}
		if err := os.Chmod(p, mode); err != nil { // after chown, which clears setuid
			return files, bytes, err
		}
		if i%20 == 5 {
			if err := unix.Lsetxattr(p, "user.bench", []byte(fmt.Sprint(i)), 0); err != nil {
				return files, bytes, fmt.Errorf("setxattr %s: %w", p, err)
			}
		}
		if err := os.Chtimes(p, when, when.Add(time.Duration(i)*time.Second)); err != nil {
			return files, bytes, err
		}
		files++
		bytes += int64(n)
	}
	if t.large > 0 {
		big := make([]byte, 1<<20)
		d := filepath.Join(dir, "srv", "large")
		if err := os.MkdirAll(d, 0o755); err != nil {
			return files, bytes, err
		}
		for i := 0; i < t.large; i++ {
			f, err := os.Create(filepath.Join(d, fmt.Sprintf("blob%d", i)))
			if err != nil {
				return files, bytes, err
			}
			for w := int64(0); w < t.size; w += int64(len(big)) {
				for j := 0; j < len(big); j += 8 {
					v := rng.Uint64()
					for k := 0; k < 8; k++ {
						big[j+k] = byte(v >> (8 * k))
					}
				}
				if _, err := f.Write(big); err != nil {
					f.Close()
					return files, bytes, err
				}
			}
			if err := f.Close(); err != nil {
				return files, bytes, err
			}
			files++
			bytes += t.size
		}
	}
	// Directories last, so their mtimes are the fixed ones.
	return files, bytes, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.IsDir() {
			return err
		}
		return os.Chtimes(p, when, when)
	})
}

// benchCopy measures section 4: each tree, on the same btrfs as the layer
// (toplayer= on the root device, the default) and on tmpfs (a top layer on
// another device), copied by toplayer.Apply and by cp -a over fresh
// snapshots of the small image.
func (b *bench) benchCopy() error {
	top := b.fs.Dir
	tmpfs := filepath.Join(b.work, "tmpfs")
	if err := os.MkdirAll(tmpfs, 0o755); err != nil {
		return err
	}
	if _, err := testenv.Output("mount", "-t", "tmpfs", "-o", "size=1g,mode=0755", "bench-tmpfs", tmpfs); err != nil {
		return err
	}
	b.cl.push("unmount "+tmpfs, func() error { return unmount(tmpfs) })
	image := filepath.Join(top, b.images[0].Subvolume)
	for _, t := range b.opts.CopyTrees {
		for _, where := range []struct{ name, dir string }{{"btrfs (same filesystem)", top}, {"tmpfs", tmpfs}} {
			src := filepath.Join(where.dir, "copy-src")
			files, bytes, err := writeCopyTree(src, t)
			if err != nil {
				return fmt.Errorf("write the %s top layer: %w", t.name, err)
			}
			row := CopyRow{Tree: t.name, Source: where.name, Files: files, Bytes: bytes}
			runs := map[string][]float64{}
			listings := map[string]map[string]entryMeta{}
			for i := 0; i < b.opts.Runs; i++ {
				order := []string{"dockroot", "cp -a"}
				if i%2 == 1 {
					order = []string{"cp -a", "dockroot"}
				}
				for _, m := range order {
					dst := filepath.Join(top, "copy-dst")
					if err := btrfs.Snapshot(image, top, "copy-dst", false); err != nil {
						return err
					}
					if err := waitCleaner(top); err != nil {
						return err
					}
					var run func() error
					if m == "dockroot" {
						run = func() error { _, err := toplayer.Apply(dst, src); return err }
					} else {
						run = func() error { _, err := testenv.Output("cp", "-a", src+"/.", dst+"/"); return err }
					}
					d, err := timeIt(run)
					if err != nil {
						return fmt.Errorf("copy the %s top layer with %s: %w", t.name, m, err)
					}
					runs[m] = append(runs[m], d)
					if i == b.opts.Runs-1 {
						if listings[m], err = listTree(dst); err != nil {
							return err
						}
					}
					if err := btrfs.DeleteRecursive(dst); err != nil {
						return err
					}
				}
			}
			row.Dockroot, row.CpA = newStat(runs["dockroot"]), newStat(runs["cp -a"])
			row.Ratio = ratio(row.Dockroot.Median, row.CpA.Median)
			// The root directory is compared apart: cp -a SRC/. DST/ stamps the
			// top layer directory's own mode, owner and times onto the new
			// root's /, while toplayer.Apply leaves / as the image has it.
			dr, ca := listings["dockroot"], listings["cp -a"]
			if dr["."] != ca["."] {
				row.RootNote = fmt.Sprintf("dockroot %s; cp -a %s", dr["."], ca["."])
			}
			delete(dr, ".")
			delete(ca, ".")
			diffs := diffListings(dr, ca, "dockroot", "cp -a")
			row.MetadataEqual, row.Compared = len(diffs) == 0, len(listings["dockroot"])
			if len(diffs) > 5 {
				diffs = append(diffs[:5], fmt.Sprintf("… and %d more", len(diffs)-5))
			}
			row.Diffs = diffs
			b.logf("copy %s from %s: dockroot %s, cp -a %s (%s); metadata equal on %d paths: %v",
				t.name, where.name, fmtMS(row.Dockroot.Median), fmtMS(row.CpA.Median), fmtRatio(row.Ratio), row.Compared, row.MetadataEqual)
			if row.RootNote != "" {
				b.logf("  / itself differs: %s", row.RootNote)
			}
			for _, d := range row.Diffs {
				b.logf("  differs: %s", d)
			}
			b.res.Copy = append(b.res.Copy, row)
			if err := os.RemoveAll(src); err != nil {
				return err
			}
		}
	}
	return waitCleaner(top)
}
