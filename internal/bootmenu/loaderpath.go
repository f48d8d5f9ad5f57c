package bootmenu

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// LoaderPath says how a bootloader names dir: relative to the root of the
// filesystem holding it, from /proc/self/mountinfo (mountinfo is its
// content, dir an absolute path without symlinks). A bootloader reads the
// filesystem itself, not the mount tree, so the mount point is dropped
// and the mounted root added back: "/boot/efi/dockroot" on an ESP mounted
// at /boot/efi is "/dockroot"; "/boot/dockroot" on a btrfs mounted with
// subvol=@ is "/@/boot/dockroot", which is how GRUB's btrfs driver
// finds it (from the top level, as grub-mkrelpath prints).
func LoaderPath(mountinfo []byte, dir string) (string, error) {
	if !path.IsAbs(dir) {
		return "", fmt.Errorf("boot directory %q is not an absolute path", dir)
	}
	dir = path.Clean(dir)
	best, bestRoot := "", ""
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw"
		// (proc(5)): field 4 is the root of the mount, field 5 the mount point.
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		root, mnt := unescapeMountinfo(f[3]), unescapeMountinfo(f[4])
		if !within(dir, mnt) || len(mnt) < len(best) {
			continue
		}
		// Later lines win at the same mount point: they are mounted on top.
		best, bestRoot = mnt, root
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if best == "" {
		return "", fmt.Errorf("no mount holds %s in mountinfo", dir)
	}
	rel := strings.TrimPrefix(dir, best)
	return path.Join("/", bestRoot, rel), nil
}

func within(dir, mnt string) bool {
	return mnt == "/" || dir == mnt || strings.HasPrefix(dir, mnt+"/")
}

// unescapeMountinfo undoes the kernel's octal escapes of space, tab,
// newline and backslash (fs/proc_namespace.c mangle).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
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
