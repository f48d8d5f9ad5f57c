package vmkit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ItoolsPackages are what a Debian root needs to build an initramfs with
// initramfs-tools that boots from btrfs: the generator, btrfs-progs (its
// initramfs hook adds `btrfs device scan`), and the kernel.
var ItoolsPackages = []string{"initramfs-tools", "btrfs-progs"}

// ItoolsLUKSRoot returns ItoolsRoot with cryptsetup-initramfs (the
// cryptroot hook and boot scripts, cryptsetup, busybox) installed on top
// (DerivedRoot): a Debian root whose initramfs opens a LUKS root.
func ItoolsLUKSRoot(cacheDir, suite string, k *Kernel) (string, error) {
	base, err := ItoolsRoot(cacheDir, suite, k)
	if err != nil {
		return "", err
	}
	return DerivedRoot(cacheDir, "itools-luks", base, "cryptsetup-initramfs")
}

// DerivedRoot returns a copy of the Debian root base (a DebianRoot) with
// pkgs installed by apt inside it, made on first use and kept in
// cacheDir/<name>/<key>, the key naming base and pkgs. Installing a few
// packages into a copy is minutes quicker than a root of its own, which
// installs the kernel again. The packages' triggers do not build an
// initramfs (update_initramfs=no while apt runs): the tests build theirs
// with UpdateInitramfs. It needs root.
func DerivedRoot(cacheDir, name, base string, pkgs ...string) (string, error) {
	sum := sha256.Sum256([]byte(base + "\n" + strings.Join(pkgs, "\n")))
	dir := filepath.Join(cacheDir, name, filepath.Base(filepath.Dir(base))+"-"+hex.EncodeToString(sum[:6]))
	return cachedRoot(dir, func(troot string) error {
		if err := run("cp", "-a", "--reflink=auto", base, troot); err != nil {
			return err
		}
		conf := "/etc/initramfs-tools/update-initramfs.conf"
		script := "set -e; export DEBIAN_FRONTEND=noninteractive; cp " + conf + " " + conf + ".dockroot; " +
			"echo update_initramfs=no >> " + conf + "; apt-get update -q; apt-get install -y -q --no-install-recommends " +
			strings.Join(pkgs, " ") + "; apt-get clean; mv " + conf + ".dockroot " + conf + "; rm -f /boot/initrd.img-*"
		if err := Chroot(troot, "sh", "-c", script); err != nil {
			return fmt.Errorf("install %s in a copy of %s (set DOCKROOT_DEBIAN_MIRROR for another mirror): %w", strings.Join(pkgs, " "), base, err)
		}
		return nil
	})
}

// ItoolsInstall is where dockroot's initramfs-tools files go in a Debian
// root (source in the repository or init, the built dockroot-init -> path
// in the root): what `make install` puts there.
func ItoolsInstall(repo, init string) map[string]string {
	return map[string]string{
		init: "usr/lib/dockroot/dockroot-init",
		filepath.Join(repo, "hook/initramfs-tools/hooks/dockroot"):                  "usr/share/initramfs-tools/hooks/dockroot",
		filepath.Join(repo, "hook/initramfs-tools/scripts/local-premount/dockroot"): "usr/share/initramfs-tools/scripts/local-premount/dockroot",
	}
}

// ItoolsFiles reads ItoolsInstall's files, executable, for InOverlay or
// UpdateInitramfs.
func ItoolsFiles(repo, init string) ([]File, error) {
	var files []File
	for src, dst := range ItoolsInstall(repo, init) {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: dst, Mode: 0o755, Data: string(b)})
	}
	return files, nil
}

// ItoolsRoot returns DebianRoot(cacheDir, "itools", suite, k,
// ItoolsPackages...): a Debian root where update-initramfs runs as on an
// installed system.
func ItoolsRoot(cacheDir, suite string, k *Kernel) (string, error) {
	return DebianRoot(cacheDir, "itools", suite, k, ItoolsPackages...)
}

// DebianRoot returns a Debian root made from the debootstrap tarball
// (DebootstrapTarball) with pkgs and the kernel package k was unpacked
// from installed by apt inside it, so that a generator (update-initramfs,
// dracut, mkinitcpio) runs there as on an installed system. It is made on
// first use and kept unpacked in cacheDir/<name>/<key>/root, the key
// naming the suite, the packages and the kernel package's version: later
// runs need no mirror. Two runs may build the same key at once. It needs
// root.
func DebianRoot(cacheDir, name, suite string, k *Kernel, pkgs ...string) (string, error) {
	pkg, version, ok := strings.Cut(filepath.Base(k.Root), "_")
	if !ok {
		return "", fmt.Errorf("kernel root %s is not named PACKAGE_VERSION (fetch-kernel.sh's layout)", k.Root)
	}
	pkgs = append(append([]string(nil), pkgs...), pkg+"="+version)
	sum := sha256.Sum256([]byte(suite + "\n" + strings.Join(pkgs, "\n")))
	dir := filepath.Join(cacheDir, name, suite+"-"+hex.EncodeToString(sum[:6]))
	return cachedRoot(dir, func(troot string) error {
		tarball, err := DebootstrapTarball(cacheDir, suite)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(troot, 0o755); err != nil {
			return err
		}
		return debianRootFrom(tarball, troot, suite, pkgs)
	})
}

// debianRootFrom unpacks the debootstrap tarball into troot and installs
// pkgs there with apt (DebianRoot).
func debianRootFrom(tarball, troot, suite string, pkgs []string) error {
	if err := run("tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", troot, "-xf", tarball); err != nil {
		return err
	}
	// The kernel comes from bookworm-security as often as from bookworm.
	m := DebianMirror()
	sources := fmt.Sprintf("deb %s %s main\ndeb %s %s-updates main\ndeb %s-security %s-security main\n",
		m, suite, m, suite, strings.TrimSuffix(m, "/"), suite)
	if err := os.WriteFile(filepath.Join(troot, "etc/apt/sources.list"), []byte(sources), 0o644); err != nil {
		return err
	}
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		os.Remove(filepath.Join(troot, "etc/resolv.conf"))
		os.WriteFile(filepath.Join(troot, "etc/resolv.conf"), b, 0o644)
	}
	// INITRD=No: the kernel's postinst hooks (initramfs-tools', dracut's)
	// skip building an initramfs nobody uses; the tests run the generator
	// themselves. Under load that build was most of a root's 30 minutes.
	script := "export DEBIAN_FRONTEND=noninteractive INITRD=No; apt-get update -q && apt-get install -y -q --no-install-recommends " +
		strings.Join(pkgs, " ") + " && apt-get clean && rm -f /boot/initrd.img-*"
	if err := Chroot(troot, "sh", "-c", script); err != nil {
		return fmt.Errorf("install %s in the Debian %s root (set DOCKROOT_DEBIAN_MIRROR for another mirror): %w", strings.Join(pkgs, " "), suite, err)
	}
	return nil
}

// cachedRoot returns dir/root once dir holds a complete build. Otherwise it
// calls build with root, a directory to fill inside a private build
// directory beside dir, and renames that into place when build succeeds:
// two runs sharing the machine-wide cache may build the same key at once,
// and the second rename simply loses.
func cachedRoot(dir string, build func(root string) error) (string, error) {
	root := filepath.Join(dir, "root")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := build(filepath.Join(tmp, "root")); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, ".complete")); serr == nil {
			return root, nil // another run finished the same key first
		}
		return "", err
	}
	return root, nil
}

// Chroot runs argv inside root with /proc, /sys and /dev bound from the
// host, and unmounts them afterwards.
func Chroot(root string, argv ...string) (err error) {
	var bound []string
	defer func() {
		for i := len(bound) - 1; i >= 0; i-- {
			if uerr := unix.Unmount(bound[i], unix.MNT_DETACH); uerr != nil && err == nil {
				err = fmt.Errorf("unmount %s: %w", bound[i], uerr)
			}
		}
	}()
	for _, d := range []string{"proc", "sys", "dev"} {
		target := filepath.Join(root, d)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("/"+d, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind /%s on %s: %w", d, target, err)
		}
		// Private, so the detach below does not propagate to the host.
		unix.Mount("", target, "", unix.MS_REC|unix.MS_SLAVE, "")
		bound = append(bound, target)
	}
	return run(append([]string{"chroot", root}, argv...)...)
}

// InOverlay mounts a throwaway overlay of root (a DebianRoot), writes
// files into it (dockroot's hook files, its binary, configuration), and
// calls fn with the merged directory; root itself is never written. It
// needs root.
func InOverlay(root string, files []File, fn func(merged string) error) (err error) {
	work, err := os.MkdirTemp("", "dockroot-overlay-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	merged, upper, wdir := filepath.Join(work, "merged"), filepath.Join(work, "upper"), filepath.Join(work, "work")
	for _, d := range []string{merged, upper, wdir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", root, upper, wdir)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s (%s): %w", merged, opts, err)
	}
	defer func() {
		if uerr := unix.Unmount(merged, unix.MNT_DETACH); uerr != nil && err == nil {
			err = fmt.Errorf("unmount %s: %w", merged, uerr)
		}
	}()
	if err := WriteFiles(merged, files); err != nil {
		return err
	}
	return fn(merged)
}

// UpdateInitramfs runs `update-initramfs -c -k KVER` in an overlay of root
// (ItoolsRoot) with files added (InOverlay), and copies the initrd and the
// kernel out into outDir. It needs root.
func UpdateInitramfs(root, kver string, files []File, outDir string) (initrd, vmlinuz string, err error) {
	initrd, vmlinuz = filepath.Join(outDir, "initrd.img-"+kver), filepath.Join(outDir, "vmlinuz-"+kver)
	err = InOverlay(root, files, func(merged string) error {
		if err := Chroot(merged, "update-initramfs", "-c", "-k", kver); err != nil {
			return err
		}
		for src, dst := range map[string]string{"boot/initrd.img-" + kver: initrd, "boot/vmlinuz-" + kver: vmlinuz} {
			if err := run("cp", filepath.Join(merged, src), dst); err != nil {
				return err
			}
		}
		if _, err := os.Stat(initrd); err != nil {
			return errors.New("update-initramfs made no " + initrd)
		}
		return nil
	})
	return initrd, vmlinuz, err
}
