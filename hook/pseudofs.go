package hook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// pseudoFS is one kernel filesystem PID 1 mounts before anything else.
type pseudoFS struct {
	target, fstype string
	flags          uintptr
	data           string
}

// pseudoFilesystems are what the rest of the boot needs: /dev for the
// block device nodes and /dev/kmsg, /proc for the cmdline and mounts, /sys
// for /sys/class/block, /run for boot.json (moved into the new root, where
// systemd expects /run to be a tmpfs with mode 0755). The flags are the
// ones systemd's mount-setup.c uses for the same mounts.
var pseudoFilesystems = []pseudoFS{
	{"/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
}

// MountPseudoFS mounts /dev, /proc, /sys and /run, and returns the ones that
// were mounted already. Already mounted is fine: as a hook inside another
// initramfs they are, and mount(2) says EBUSY for some of them.
func MountPseudoFS() (already []string, err error) {
	for _, m := range pseudoFilesystems {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return already, fmt.Errorf("mkdir %s: %w", m.target, err)
		}
		if isMountPoint(m.target) {
			already = append(already, m.target)
			continue
		}
		err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data)
		if errors.Is(err, unix.EBUSY) {
			already = append(already, m.target)
			continue
		}
		if err != nil {
			return already, fmt.Errorf("mount %s on %s (%s): %w", m.fstype, m.target, m.data, err)
		}
	}
	return already, nil
}

// isMountPoint reports whether something is mounted on dir: its device
// differs from its parent's. (A bind mount from the same filesystem is not
// detected, which does not matter for these targets.)
func isMountPoint(dir string) bool {
	d, err1 := devOfPath(dir)
	p, err2 := devOfPath(filepath.Dir(dir))
	return err1 == nil && err2 == nil && d != p
}
