package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/testenv"
)

// DeleteRow is the cost of deleting one old layer of Files files, with
// Nested subvolumes inside it (as systemd and Docker make in a running
// root), by three methods. Every figure is the time until the deleting
// call returns: btrfs unlinks the subvolume then and frees its trees in a
// kernel thread afterwards, which Cleaner times separately.
type DeleteRow struct {
	Files    int    `json:"files"`
	Nested   int    `json:"nested_subvolumes"`
	Dockroot Stat   `json:"dockroot"`    // internal/btrfs.DeleteRecursive: tree search for children, one ioctl each
	Progs    Stat   `json:"btrfs_progs"` // `btrfs subvolume delete`, as the ancestor ran it
	ProgsErr string `json:"btrfs_progs_error,omitempty"`
	Walk     Stat   `json:"walk"`    // walk every directory for nested subvolumes first (containerd's SubvolDelete)
	Cleaner  Stat   `json:"cleaner"` // after dockroot's delete: until `btrfs subvolume sync` returns
}

// deleteMethods are the contenders of section 3, in table order.
var deleteMethods = []string{"dockroot", "btrfs-progs", "walk"}

// fillSubvolume creates subvolume path holding n files of 16 bytes in
// directories of 1000, the shape of a root filesystem's /usr.
func fillSubvolume(path string, n int) error {
	if err := btrfs.CreateSubvolume(path); err != nil {
		return err
	}
	data := []byte("0123456789abcdef")
	for i := 0; i < n; i++ {
		dir := filepath.Join(path, "usr", fmt.Sprintf("d%04d", i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%06d", i)), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// nestedPaths are the subvolumes made inside a layer for the nested rows,
// parents first: what systemd-nspawn and Docker create in a running root.
var nestedPaths = []string{
	"var/lib/machines",
	"var/lib/machines/web",
	"var/lib/docker/btrfs/subvolumes/0123abcd",
}

// makeLayer snapshots src as a writable layer at dst and, with nested,
// creates nestedPaths inside it, each holding a few files.
func makeLayer(src, dst string, nested bool) error {
	if err := btrfs.Snapshot(src, filepath.Dir(dst), filepath.Base(dst), false); err != nil {
		return err
	}
	if !nested {
		return nil
	}
	for _, rel := range nestedPaths {
		p := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := btrfs.CreateSubvolume(p); err != nil {
			return err
		}
		for i := 0; i < 10; i++ {
			if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("f%d", i)), []byte("x"), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// walkDelete deletes the subvolume at path the way containerd's btrfs
// SubvolDelete does: walk every directory below it to find nested
// subvolumes (a directory with inode 256, BTRFS_FIRST_FREE_OBJECTID, is a
// subvolume root), delete those deepest first, then path.
func walkDelete(path string) error {
	var nested []string
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == path {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == 256 {
			nested = append(nested, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(nested, func(i, j int) bool {
		return strings.Count(nested[i], "/") > strings.Count(nested[j], "/")
	})
	for _, p := range append(nested, path) {
		if err := btrfs.Delete(p); err != nil {
			return err
		}
	}
	return nil
}

// benchDelete measures section 3 for every file count, without and with
// nested subvolumes.
func (b *bench) benchDelete() error {
	top := b.fs.Dir
	for _, n := range b.opts.DeleteFiles {
		src := filepath.Join(top, fmt.Sprintf("delete-src-%d", n))
		if _, err := timeIt(func() error { return fillSubvolume(src, n) }); err != nil {
			return fmt.Errorf("make a layer of %d files: %w", n, err)
		}
		for _, nested := range []bool{false, true} {
			row := DeleteRow{Files: n}
			if nested {
				row.Nested = len(nestedPaths)
			}
			runs := map[string][]float64{}
			var cleaner []float64
			layer := filepath.Join(top, "delete-layer")
			for i := 0; i < b.opts.Runs; i++ {
				for _, m := range deleteMethods {
					if err := makeLayer(src, layer, nested); err != nil {
						return err
					}
					if err := waitCleaner(top); err != nil {
						return err
					}
					var del func() error
					switch m {
					case "dockroot":
						del = func() error { return btrfs.DeleteRecursive(layer) }
					case "btrfs-progs":
						del = func() error { _, err := testenv.Output("btrfs", "subvolume", "delete", layer); return err }
					case "walk":
						del = func() error { return walkDelete(layer) }
					}
					t, err := timeIt(del)
					if err != nil {
						if m != "btrfs-progs" || !nested {
							return fmt.Errorf("delete a layer of %d files (%s): %w", n, m, err)
						}
						// The ancestor's one-level delete cannot remove a
						// layer holding subvolumes (the kernel answers
						// ENOTEMPTY); record that and clean up.
						row.ProgsErr = firstLine(err.Error())
						if err := btrfs.DeleteRecursive(layer); err != nil {
							return err
						}
						continue
					}
					runs[m] = append(runs[m], t)
					if m == "dockroot" {
						c, err := timeIt(func() error { return waitCleaner(top) })
						if err != nil {
							return err
						}
						cleaner = append(cleaner, c)
					}
				}
			}
			row.Dockroot, row.Progs, row.Walk = newStat(runs["dockroot"]), newStat(runs["btrfs-progs"]), newStat(runs["walk"])
			row.Cleaner = newStat(cleaner)
			b.logf("delete %7d files, %d nested: dockroot %s, btrfs-progs %s%s, walk %s; cleaner afterwards %s",
				n, row.Nested, fmtMS(row.Dockroot.Median), fmtMS(row.Progs.Median), errNote(row.ProgsErr),
				fmtMS(row.Walk.Median), fmtMS(row.Cleaner.Median))
			b.res.Delete = append(b.res.Delete, row)
		}
		if err := btrfs.DeleteRecursive(src); err != nil {
			return err
		}
		if err := waitCleaner(top); err != nil {
			return err
		}
	}
	return nil
}

func errNote(s string) string {
	if s == "" {
		return ""
	}
	return " (fails: " + s + ")"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
