package vmkit

import (
	"errors"
	"os"
	"path/filepath"
)

// DracutPackages are what a Debian root needs to build a systemd-based
// initramfs with dracut that boots from btrfs: Debian's dracut (which
// conflicts with initramfs-tools, so it is the root's only generator and
// satisfies the kernel package's linux-initramfs-tool), btrfs-progs (for
// dracut's btrfs module) and systemd (for its systemd modules).
var DracutPackages = []string{"dracut", "btrfs-progs", "systemd"}

// DracutRoot returns DebianRoot(cacheDir, "dracut", suite, k,
// DracutPackages...): a Debian root where dracut runs as on an installed
// system.
func DracutRoot(cacheDir, suite string, k *Kernel) (string, error) {
	return DebianRoot(cacheDir, "dracut", suite, k, DracutPackages...)
}

// Dracut runs dracut with args (its options, without the image and the
// kernel version) in an overlay of root (DracutRoot) with files added
// (InOverlay), writing /boot/initrd.img-KVER, and copies the initrd and
// the kernel out into outDir. It needs root.
func Dracut(root, kver string, args []string, files []File, outDir string) (initrd, vmlinuz string, err error) {
	initrd, vmlinuz = filepath.Join(outDir, "initrd.img-"+kver), filepath.Join(outDir, "vmlinuz-"+kver)
	err = InOverlay(root, files, func(merged string) error {
		argv := append(append([]string{"dracut"}, args...), "--kver", kver, "/boot/initrd.img-"+kver)
		if err := Chroot(merged, argv...); err != nil {
			return err
		}
		for src, dst := range map[string]string{"boot/initrd.img-" + kver: initrd, "boot/vmlinuz-" + kver: vmlinuz} {
			if err := run("cp", filepath.Join(merged, src), dst); err != nil {
				return err
			}
		}
		if _, err := os.Stat(initrd); err != nil {
			return errors.New("dracut made no " + initrd)
		}
		return nil
	})
	return initrd, vmlinuz, err
}
