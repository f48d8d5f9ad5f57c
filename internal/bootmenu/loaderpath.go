package bootmenu

import (
	"fmt"
	"path"
	"strings"

	"github.com/dockroot/dockroot/internal/mountinfo"
)

// LoaderPath says how a bootloader names dir: relative to the root of the
// filesystem holding it, from /proc/self/mountinfo (mi is its
// content, dir an absolute path without symlinks). A bootloader reads the
// filesystem itself, not the mount tree, so the mount point is dropped
// and the mounted root added back: "/boot/efi/dockroot" on an ESP mounted
// at /boot/efi is "/dockroot"; "/boot/dockroot" on a btrfs mounted with
// subvol=@ is "/@/boot/dockroot", which is how GRUB's btrfs driver
// finds it (from the top level, as grub-mkrelpath prints).
func LoaderPath(mi []byte, dir string) (string, error) {
	if !path.IsAbs(dir) {
		return "", fmt.Errorf("boot directory %q is not an absolute path", dir)
	}
	dir = path.Clean(dir)
	mounts, err := mountinfo.Parse(mi)
	if err != nil {
		return "", err
	}
	best, bestRoot := "", ""
	for _, m := range mounts {
		if !within(dir, m.MountPoint) || len(m.MountPoint) < len(best) {
			continue
		}
		// Later lines win at the same mount point: they are mounted on top.
		best, bestRoot = m.MountPoint, m.Root
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
