package vmkit

import (
	"fmt"
	"os"
	"path/filepath"
)

// DebianMirror is where debootstrap fetches packages: $DOCKROOT_DEBIAN_MIRROR,
// or deb.debian.org, the mirror Debian's own sources.list names.
func DebianMirror() string {
	if m := os.Getenv("DOCKROOT_DEBIAN_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

// DebootstrapTarball returns a tarball of a minimal Debian suite with
// systemd as init (debootstrap --variant=minbase --include=systemd,
// systemd-sysv), made on first use and kept in cacheDir/debootstrap. It
// needs root and the mirror; later calls need neither.
func DebootstrapTarball(cacheDir, suite string) (string, error) {
	dir := filepath.Join(cacheDir, "debootstrap")
	out := filepath.Join(dir, suite+"-minbase-systemd.tar")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	if err := run("debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv", suite, rootfs, DebianMirror()); err != nil {
		return "", fmt.Errorf("make the Debian %s image (set DOCKROOT_DEBIAN_MIRROR for another mirror): %w", suite, err)
	}
	tarball := filepath.Join(tmp, "rootfs.tar")
	if err := run("tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", rootfs, "-cf", tarball, "."); err != nil {
		return "", err
	}
	if err := os.Rename(tarball, out); err != nil {
		return "", err
	}
	return out, nil
}
