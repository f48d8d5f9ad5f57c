// Package kernel finds the kernels whose modules a root holds
// (lib/modules/KVER, usr/lib/modules/KVER) and orders kernel versions as
// people and package managers do. The initramfs builder and the host
// tool's install use it.
//
// It is a leaf: it imports nothing of dockroot's.
package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// moduleTrees are where a root keeps its kernels' modules, relative to the
// root: the classic /lib/modules, and /usr/lib/modules on merged-/usr
// systems that do not (or not yet) have the /lib -> usr/lib symlink.
var moduleTrees = []string{"lib/modules", "usr/lib/modules"}

// Tree is one kernel's module directory inside a root.
type Tree struct {
	Version string
	Dir     string // relative to the root, e.g. "lib/modules/6.1.0-56-amd64"
}

// Find lists the kernels under the root fsys, newest first. A
// directory counts only if it holds modules (kernel/, modules.order or
// modules.dep), so leftovers of removed kernels (an empty updates/ dir, for
// example) are not picked.
func Find(fsys fs.FS) ([]Tree, error) {
	seen := map[string]bool{}
	var out []Tree
	for _, tree := range moduleTrees {
		ents, err := fs.ReadDir(fsys, tree)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list kernels in %s: %w", tree, err)
		}
		for _, e := range ents {
			v := e.Name()
			dir := path.Join(tree, v)
			if seen[v] || !hasModules(fsys, dir) {
				continue
			}
			seen[v] = true
			out = append(out, Tree{Version: v, Dir: dir})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return CompareVersions(out[i].Version, out[j].Version) > 0 })
	return out, nil
}

func hasModules(fsys fs.FS, dir string) bool {
	for _, marker := range []string{"kernel", "modules.order", "modules.dep"} {
		if _, err := fs.Stat(fsys, path.Join(dir, marker)); err == nil {
			return true
		}
	}
	return false
}

// Pick returns the tree of version kver, or of the newest kernel when
// kver is empty.
func Pick(fsys fs.FS, rootDesc, kver string) (Tree, error) {
	trees, err := Find(fsys)
	if err != nil {
		return Tree{}, err
	}
	if len(trees) == 0 {
		return Tree{}, fmt.Errorf("no kernel modules under %s (looked in %s): install a kernel there or pass --root of a system that has one",
			rootDesc, strings.Join(moduleTrees, " and "))
	}
	if kver == "" {
		return trees[0], nil
	}
	var have []string
	for _, t := range trees {
		if t.Version == kver {
			return t, nil
		}
		have = append(have, t.Version)
	}
	return Tree{}, fmt.Errorf("kernel %s has no modules under %s; available: %s", kver, rootDesc, strings.Join(have, ", "))
}

// CompareVersions orders kernel release strings the way `sort -V` does for
// them: runs of digits compare as numbers, everything else byte-wise, so
// 6.1.0-56-amd64 > 6.1.0-9-amd64 and 6.12.1 > 6.9.12. It returns -1, 0 or 1.
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		ca, ra := versionChunk(a)
		cb, rb := versionChunk(b)
		if c := compareChunk(ca, cb); c != 0 {
			return c
		}
		a, b = ra, rb
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func versionChunk(s string) (chunk, rest string) {
	digit := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == digit {
		i++
	}
	return s[:i], s[i:]
}

func compareChunk(a, b string) int {
	da, db := isDigit(a[0]), isDigit(b[0])
	switch {
	case da && db:
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	case da:
		return 1 // a number beats a word at the same place
	case db:
		return -1
	}
	return strings.Compare(a, b)
}
