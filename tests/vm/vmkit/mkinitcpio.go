package vmkit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// MkinitcpioPackages are what a Debian root needs to run mkinitcpio 39.2
// (shared/tools/README.md): a static busybox for the image's /init shell,
// kmod, udev for the udev hook, bsdtar to write the cpio, zstd (its
// default compression) and btrfs-progs for the fsck hook.
var MkinitcpioPackages = []string{"busybox-static", "kmod", "udev", "libarchive-tools", "zstd", "btrfs-progs"}

// MkinitcpioVersion is the version of the source tarball MkinitcpioRoot
// installs (the archive has no git history to take it from).
const MkinitcpioVersion = "39.2"

// MkinitcpioDebianHook is an install hook, to be named in HOOKS right
// after "base", that repairs the one thing base gets wrong with Debian's
// busybox: busybox lists itself among its applets, so base links
// /usr/bin/busybox to itself; this puts the binary back.
const MkinitcpioDebianHook = `#!/usr/bin/env bash
# Debian only: busybox-static lists "busybox" among its applets, so the
# base hook overwrote /usr/bin/busybox with a link to itself.
build() {
    add_binary /usr/lib/initcpio/busybox /usr/bin/busybox
}
`

// MkinitcpioRoot returns a Debian root (DebianRoot(cacheDir, "mkinitcpio",
// suite, k, MkinitcpioPackages...)) with mkinitcpio installed from
// tarball, the unmodified source, by its own Makefile, and Debian's
// differences from Arch bridged as shared/tools/README.md describes:
// Debian's /usr/sbin programs hard-linked into /usr/bin (mkinitcpio's
// PATH is Arch's merged /usr/bin; a symlink to ../sbin would loop in the
// image, where sbin -> usr/bin), /usr/lib/libkmod.so.2 for the udev hook,
// Debian's static busybox at /usr/lib/initcpio/busybox, and
// /etc/initcpio/install/debian-busybox (MkinitcpioDebianHook).
//
// It is kept in cacheDir/mkinitcpio-VERSION/, keyed by the Debian root's
// key and the tarball's sha256, as a hard-linked copy of the Debian root
// (mkinitcpio's files are all new ones, so the two share only files
// neither changes). Use it read-only, through InOverlay. It needs root.
func MkinitcpioRoot(cacheDir, suite string, k *Kernel, tarball string) (string, error) {
	deb, err := DebianRoot(cacheDir, "mkinitcpio", suite, k, MkinitcpioPackages...)
	if err != nil {
		return "", err
	}
	f, err := os.Open(tarball)
	if err != nil {
		return "", fmt.Errorf("mkinitcpio's source (shared/tools): %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", err
	}
	key := filepath.Base(filepath.Dir(deb)) + "-" + hex.EncodeToString(h.Sum(nil)[:6]) + "-" + bridgeVersion
	dir := filepath.Join(cacheDir, "mkinitcpio-"+MkinitcpioVersion, key)
	return cachedRoot(dir, func(troot string) error {
		return installMkinitcpio(deb, troot, tarball)
	})
}

// installMkinitcpio fills troot with a hard-linked copy of the Debian root
// deb, mkinitcpio built from tarball and installed into it, and the bridges
// to Debian (MkinitcpioRoot).
func installMkinitcpio(deb, troot, tarball string) error {
	if err := run("cp", "-al", deb, troot); err != nil {
		return err
	}
	src := filepath.Join(filepath.Dir(troot), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return err
	}
	if err := run("tar", "-C", src, "--strip-components=1", "-xzf", tarball); err != nil {
		return err
	}
	// make install builds the man pages with asciidoctor first; empty
	// ones, newer than their sources, stand in.
	for _, m := range []string{"mkinitcpio.8", "mkinitcpio.conf.5", "lsinitcpio.1"} {
		if err := os.WriteFile(filepath.Join(src, "man", m), nil, 0o644); err != nil {
			return err
		}
	}
	if err := run("make", "-C", src, "VERSION="+MkinitcpioVersion, "install", "DESTDIR="+troot); err != nil {
		return fmt.Errorf("install mkinitcpio %s into %s: %w", MkinitcpioVersion, troot, err)
	}
	return bridgeDebian(troot)
}

// bridgeVersion is part of MkinitcpioRoot's cache key: change it when
// bridgeDebian changes.
const bridgeVersion = "b2"

// bridgeDebian makes a Debian root look enough like Arch for mkinitcpio's
// hooks (see MkinitcpioRoot). New names only: the root shares its inodes
// with the Debian root it was linked from.
func bridgeDebian(root string) error {
	sbin, bin := filepath.Join(root, "usr/sbin"), filepath.Join(root, "usr/bin")
	entries, err := os.ReadDir(sbin)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(bin, e.Name())); err == nil {
			continue
		}
		// A link such as modinfo -> ../bin/kmod is linked to its target.
		src := filepath.Join(sbin, e.Name())
		if e.Type()&os.ModeSymlink != 0 {
			l, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if filepath.IsAbs(l) {
				src = filepath.Join(root, l)
			} else {
				src = filepath.Join(sbin, l)
			}
		}
		if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if err := os.Link(src, filepath.Join(bin, e.Name())); err != nil {
			return err
		}
	}
	libkmod, err := filepath.Glob(filepath.Join(root, "usr/lib/*-linux-gnu/libkmod.so.2"))
	if err != nil || len(libkmod) != 1 {
		return fmt.Errorf("find libkmod.so.2 under %s/usr/lib: %v (kmod installed?)", root, libkmod)
	}
	rel, _ := filepath.Rel(filepath.Join(root, "usr/lib"), libkmod[0])
	if err := os.Symlink(rel, filepath.Join(root, "usr/lib/libkmod.so.2")); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	busybox := filepath.Join(root, "usr/lib/initcpio/busybox")
	if err := os.Link(filepath.Join(root, "usr/bin/busybox"), busybox); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("link Debian's static busybox to %s: %w", busybox, err)
	}
	return WriteFiles(root, []File{{Path: "etc/initcpio/install/debian-busybox", Mode: 0o644, Data: MkinitcpioDebianHook}})
}

// Mkinitcpio runs `mkinitcpio -k KVER -g /boot/initramfs-dockroot.img`
// inside an overlay of root (MkinitcpioRoot) with files added (dockroot's
// hook files, /etc/mkinitcpio.conf), and copies the image and the kernel
// out into outDir. It returns mkinitcpio's output as well, which the
// caller must check: mkinitcpio 39.2 exits 1 when a hook reported an error
// ("errors were encountered during the build") but writes the image all
// the same, and then Mkinitcpio copies it out and returns the error too.
// It needs root.
func Mkinitcpio(root, kver string, files []File, outDir string) (initrd, vmlinuz, output string, err error) {
	initrd, vmlinuz = filepath.Join(outDir, "initramfs-dockroot-"+kver+".img"), filepath.Join(outDir, "vmlinuz-"+kver)
	err = InOverlay(root, files, func(merged string) error {
		// Its output is kept in the overlay: Chroot returns only the status.
		status := Chroot(merged, "sh", "-c", "mkinitcpio -k "+kver+" -g /boot/initramfs-dockroot.img >/boot/mkinitcpio.log 2>&1")
		b, rerr := os.ReadFile(filepath.Join(merged, "boot/mkinitcpio.log"))
		output = string(b)
		if status != nil {
			status = fmt.Errorf("mkinitcpio -k %s: %w (%v)\n%s", kver, status, rerr, output)
		}
		// mkinitcpio exits 1 after a hook's error and still writes the
		// image: copy it out when it is there, for the caller to judge.
		if _, err := os.Stat(filepath.Join(merged, "boot/initramfs-dockroot.img")); err != nil {
			return errors.Join(status, err)
		}
		for src, dst := range map[string]string{"boot/initramfs-dockroot.img": initrd, "boot/vmlinuz-" + kver: vmlinuz} {
			if err := run("cp", filepath.Join(merged, src), dst); err != nil {
				return err
			}
		}
		return status
	})
	return initrd, vmlinuz, output, err
}
