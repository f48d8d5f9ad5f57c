package vmkit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/internal/mountinfo"
	"github.com/dockroot/dockroot/internal/testenv"
)

// MakeImage creates a sparse file of sizeMB and formats it with fstype
// ("btrfs" or "ext4") and label. For ext4, a non-empty fromDir populates the
// filesystem without mounting it (mkfs.ext4 -d).
func MakeImage(path string, sizeMB int, fstype, label, fromDir string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create disk image: %w", err)
	}
	err = f.Truncate(int64(sizeMB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size disk image %s: %w", path, err)
	}
	var argv []string
	switch fstype {
	case "btrfs":
		argv = []string{"mkfs.btrfs", "-q", "-f", "-L", label, path}
		if fromDir != "" {
			return fmt.Errorf("disk image %s: populating btrfs from a directory is not supported; mount it instead", path)
		}
	case "ext4":
		argv = []string{"mkfs.ext4", "-q", "-F", "-L", label}
		if fromDir != "" {
			argv = append(argv, "-d", fromDir)
		}
		argv = append(argv, path)
	default:
		return fmt.Errorf("disk image %s: unsupported filesystem %q (btrfs or ext4)", path, fstype)
	}
	return run(argv...)
}

// CopyImage copies a disk image, sharing extents where the host filesystem
// can and keeping holes, so a per-test copy of a mostly empty image is cheap.
func CopyImage(src, dst string) error {
	return run("cp", "--reflink=auto", "--sparse=always", src, dst)
}

// Mount is a disk image attached to a loop device and mounted on the host.
// Never mount an image a running VM uses: two kernels writing one btrfs
// corrupt it.
type Mount struct {
	Image, Loop, Dir string
}

// MountImage attaches image to a free loop device and mounts it on dir
// (created if needed). Btrfs is mounted at its top level (subvolid=5) so
// every subvolume is reachable, whatever the default subvolume is.
func MountImage(image, dir, fstype string) (*Mount, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	loop, err := testenv.Output("losetup", "--find", "--show", image)
	if err != nil {
		return nil, err
	}
	m := &Mount{Image: image, Loop: strings.TrimSpace(loop), Dir: dir}
	argv := []string{"mount", "-t", fstype}
	if fstype == "btrfs" {
		argv = append(argv, "-o", "subvolid=5")
	}
	if err := run(append(argv, m.Loop, dir)...); err != nil {
		if derr := run("losetup", "-d", m.Loop); derr != nil {
			fmt.Fprintf(os.Stderr, "vmkit: cleanup after failed mount: %v\n", derr)
		}
		return nil, err
	}
	return m, nil
}

// Close unmounts Dir and everything mounted below it (dockerd leaves bind
// mounts of its btrfs directory behind if it is killed), deepest first, then
// detaches the loop device. It returns the first error but tries every step.
func (m *Mount) Close() error {
	var errs []error
	mounts, err := mountsUnder(m.Dir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, mp := range mounts {
		if err := run("umount", mp); err != nil {
			if lerr := run("umount", "-l", mp); lerr != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := run("losetup", "-d", m.Loop); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below dir from
// /proc/self/mountinfo, deepest (and latest) first.
func mountsUnder(dir string) ([]string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	mounts, err := mountinfo.Parse(data)
	if err != nil {
		return nil, err
	}
	return mountinfo.Below(mounts, dir), nil
}

func run(argv ...string) error {
	_, err := testenv.Output(argv...)
	return err
}
