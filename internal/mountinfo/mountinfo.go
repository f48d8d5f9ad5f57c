// Package mountinfo reads /proc/self/mountinfo (proc(5)) and undoes the
// kernel's octal escapes, which fstab(5) shares. Host-side helper: `dockroot
// menu` finds how a bootloader names a directory with it, `dockroot doctor`
// reads an image's fstab fields with Unescape, and the VM test kit and
// internal/testenv find the mounts to undo with Below.
//
// It is a leaf: it imports nothing of dockroot's.
package mountinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo, the fields dockroot uses, unescaped.
type Mount struct {
	// Root is the directory of the filesystem mounted here: "/" for a
	// whole filesystem, "/@" for a btrfs subvolume, "/x" for a bind mount.
	Root string
	// MountPoint is where it is mounted, relative to the reader's root.
	MountPoint string
	FSType     string
	Source     string
}

// Parse reads mountinfo lines in the kernel's order (later mounts later):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
//
// Field 4 is the root, field 5 the mount point; the file system type and
// source follow the "-" that ends the optional fields. Lines too short to
// hold a mount point are skipped.
func Parse(data []byte) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		m := Mount{Root: Unescape(f[3]), MountPoint: Unescape(f[4])}
		for i := 5; i < len(f); i++ {
			if f[i] == "-" {
				if i+1 < len(f) {
					m.FSType = f[i+1]
				}
				if i+2 < len(f) {
					m.Source = Unescape(f[i+2])
				}
				break
			}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// Unescape undoes the octal escapes (\040 for a space, \011 tab, \012
// newline, \134 backslash) the kernel writes in mountinfo paths
// (fs/proc_namespace.c mangle) and getmntent(3) reads in fstab fields.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Below returns the mount points of mounts (in Parse's order) that lie at
// or below one of dirs, in the order to unmount them: deeper first, and of
// mounts stacked on one point, the later first (a stacked mount hides the
// one under it, which umount(2) can only reach after it).
func Below(mounts []Mount, dirs ...string) []string {
	var found []string
	for i := len(mounts) - 1; i >= 0; i-- {
		mp := mounts[i].MountPoint
		for _, d := range dirs {
			if d = strings.TrimSuffix(d, "/"); mp == d || strings.HasPrefix(mp, d+"/") {
				found = append(found, mp)
				break
			}
		}
	}
	sort.SliceStable(found, func(i, j int) bool {
		return strings.Count(found[i], "/") > strings.Count(found[j], "/")
	})
	return found
}
