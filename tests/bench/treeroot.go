package main

import (
	"fmt"
	"path/filepath"

	"github.com/dockroot/dockroot/internal/btrfs"
)

// maxNodePointers is how many child pointers a btrfs node holds with the
// default 16 KiB nodesize: (16384 - 101 byte header) / 33 bytes a pointer.
const maxNodePointers = 493

// RootRow is one snapshot of a subvolume of Files files, whose tree root is
// a block at Level holding Pointers pointers (items, for a leaf). A
// snapshot copies the source's root block and adds a reference to every
// block it points to (btrfs_copy_root, btrfs_inc_ref), inside the
// transaction commit that BTRFS_IOC_SNAP_CREATE_V2 waits for: that is the
// part of dockroot's boot that moves with the image's tree, and this
// section measures it apart from everything else.
type RootRow struct {
	Files    int  `json:"files"`
	Level    int  `json:"tree_level"`
	Pointers int  `json:"tree_root_items"`
	Snapshot Stat `json:"snapshot"`
}

// benchTreeRoot measures section 1d: one writable snapshot (what
// Layers.Prepare asks of btrfs) of subvolumes whose roots hold more and
// more pointers, then one level more. The sources are made first and the
// timed runs go round them, so that drift on the machine touches every
// row alike.
func (b *bench) benchTreeRoot() error {
	top := b.fs.Dir
	var rows []RootRow
	var srcs []string
	for _, n := range b.opts.RootFiles {
		src := filepath.Join(top, fmt.Sprintf("root-src-%d", n))
		if err := fillSubvolume(src, n); err != nil {
			return fmt.Errorf("make a subvolume of %d files: %w", n, err)
		}
		level, items, err := treeShape(b.fs.Loop, top, src)
		if err != nil {
			return fmt.Errorf("subvolume of %d files: tree shape: %w", n, err)
		}
		rows = append(rows, RootRow{Files: n, Level: level, Pointers: items})
		srcs = append(srcs, src)
	}
	runs := make([][]float64, len(rows))
	snap := filepath.Join(top, "root-snap")
	for i := 0; i < b.opts.HookRuns; i++ {
		for j, src := range srcs {
			if err := waitCleaner(top); err != nil {
				return err
			}
			t, err := timeIt(func() error { return btrfs.Snapshot(src, top, filepath.Base(snap), false) })
			if err != nil {
				return fmt.Errorf("snapshot the subvolume of %d files: %w", rows[j].Files, err)
			}
			if err := btrfs.Delete(snap); err != nil {
				return err
			}
			runs[j] = append(runs[j], t)
		}
	}
	for j := range rows {
		rows[j].Snapshot = newStat(runs[j])
		b.logf("snapshot, %6d files, root level %d with %3d pointers: %s", rows[j].Files, rows[j].Level, rows[j].Pointers, fmtMS(rows[j].Snapshot.Median))
	}
	b.res.TreeRoot = rows
	for _, src := range srcs {
		if err := btrfs.DeleteRecursive(src); err != nil {
			return err
		}
	}
	return waitCleaner(top)
}

// pointerCost fits snapshot time against the root's pointer count over the
// rows whose root is the lowest node level measured (least squares), and
// returns the cost of one pointer and of a root of none, in ms. ok is false
// with fewer than two such rows of different counts.
func pointerCost(rows []RootRow) (perPointer, base float64, ok bool) {
	level := lowestNodeLevel(rows)
	var n, sx, sy, sxx, sxy float64
	for _, r := range rows {
		if r.Level != level || r.Snapshot.Median <= 0 {
			continue
		}
		x, y := float64(r.Pointers), r.Snapshot.Median
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	d := n*sxx - sx*sx
	if n < 2 || d == 0 {
		return 0, 0, false
	}
	perPointer = (n*sxy - sx*sy) / d
	return perPointer, (sy - perPointer*sx) / n, true
}

// lowestNodeLevel is the lowest level above the leaves among rows' roots,
// -1 if every root is a leaf: a leaf's items are not pointers.
func lowestNodeLevel(rows []RootRow) int {
	level := -1
	for _, r := range rows {
		if r.Level > 0 && (level < 0 || r.Level < level) {
			level = r.Level
		}
	}
	return level
}
