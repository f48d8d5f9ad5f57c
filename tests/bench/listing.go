package main

import (
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// entryMeta is what section 4 compares between dockroot's and cp -a's
// results: everything a boot could notice about a path.
type entryMeta struct {
	Type   string // "f", "d", "l", "c", "b", "p", "s"
	Mode   uint32 // permission bits with setuid, setgid and sticky
	UID    uint32
	GID    uint32
	Mtime  int64 // nanoseconds
	Size   int64 // regular files and symlinks
	Nlink  uint64
	Link   string
	Xattrs string // sorted name=hex(value), ';'-separated
}

func (m entryMeta) String() string {
	return fmt.Sprintf("%s %04o %d:%d mtime=%d size=%d nlink=%d link=%q xattrs=%q",
		m.Type, m.Mode, m.UID, m.GID, m.Mtime, m.Size, m.Nlink, m.Link, m.Xattrs)
}

// listTree lstat()s every path under root (root itself as ".").
func listTree(root string) (map[string]entryMeta, error) {
	out := map[string]entryMeta{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		m, err := metaOf(p)
		if err != nil {
			return err
		}
		out[rel] = m
		return nil
	})
	return out, err
}

func metaOf(p string) (entryMeta, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return entryMeta{}, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	m := entryMeta{
		Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		Mtime: st.Mtim.Nano(), Nlink: uint64(st.Nlink),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		m.Type, m.Size = "f", st.Size
	case unix.S_IFDIR:
		// A directory's link count and size depend on what else is in it
		// (btrfs counts name bytes); neither is an attribute a copy sets.
		m.Type, m.Nlink = "d", 0
	case unix.S_IFLNK:
		m.Type, m.Size = "l", st.Size
		link, err := os.Readlink(p)
		if err != nil {
			return m, err
		}
		m.Link = link
	case unix.S_IFCHR:
		m.Type = "c"
	case unix.S_IFBLK:
		m.Type = "b"
	case unix.S_IFIFO:
		m.Type = "p"
	case unix.S_IFSOCK:
		m.Type = "s"
	}
	xa, err := xattrsOf(p)
	if err != nil {
		return m, err
	}
	m.Xattrs = xa
	return m, nil
}

func xattrsOf(p string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if err == unix.ENOTSUP {
			return "", nil
		}
		return "", &os.PathError{Op: "llistxattr", Path: p, Err: err}
	}
	var parts []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 65536)
		vn, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return "", &os.PathError{Op: "lgetxattr " + name, Path: p, Err: err}
		}
		parts = append(parts, name+"="+hex.EncodeToString(val[:vn]))
	}
	sort.Strings(parts)
	return strings.Join(parts, ";"), nil
}

// diffListings returns one line per path whose metadata differs between a
// and b, or that only one has, sorted.
func diffListings(a, b map[string]entryMeta, aName, bName string) []string {
	var diffs []string
	for p, ma := range a {
		mb, ok := b[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: only in %s (%s)", p, aName, ma))
		case ma != mb:
			diffs = append(diffs, fmt.Sprintf("%s: %s has %s; %s has %s", p, aName, ma, bName, mb))
		}
	}
	for p, mb := range b {
		if _, ok := a[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: only in %s (%s)", p, bName, mb))
		}
	}
	sort.Strings(diffs)
	return diffs
}
