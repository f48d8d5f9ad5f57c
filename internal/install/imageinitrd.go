package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/dockroot/dockroot/internal/imagekernel"
	"github.com/dockroot/dockroot/internal/initramfs"
	"github.com/dockroot/dockroot/internal/securejoin"
)

// ImageInitrd is the image's own initramfs that --initramfs image installs.
type ImageInitrd struct {
	Path    string   // in the image: "/boot/initrd.img-6.1.0-57-amd64"
	Size    int64    // bytes
	Streams []string // compression of each cpio stream: "none" (early microcode), "zstd"
	Hook    []string // the dockroot files found in it: the binary and what runs it
}

// initName is the binary the hooks copy into the initramfs; it is looked
// for by name anywhere in it, since each generator puts it elsewhere.
const initName = "dockroot-init"

// ImageInitramfsError says why the image's own initramfs cannot be used
// for the kernel being installed. File is its path in the image, "" when
// there is none (Looked says where install looked).
type ImageInitramfsError struct {
	KernelVersion string
	File          string
	Looked        []string
	Reason        string
	Err           error // a read error, when that is the reason
}

func (e *ImageInitramfsError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("the image has no initramfs for kernel %s (looked for /%s)", e.KernelVersion, strings.Join(e.Looked, ", /"))
	}
	if e.Err != nil {
		return fmt.Sprintf("the image's %s (kernel %s) %s: %v", e.File, e.KernelVersion, e.Reason, e.Err)
	}
	return fmt.Sprintf("the image's %s (kernel %s) %s", e.File, e.KernelVersion, e.Reason)
}

func (e *ImageInitramfsError) Unwrap() error { return e.Err }

// imageInitrdPaths are where the generators write kernel k's initramfs,
// relative to the image root, in the order they are tried.
func imageInitrdPaths(root string, k imagekernel.Kernel) []string {
	v := k.Version
	out := []string{
		"boot/initrd.img-" + v,         // initramfs-tools (Debian, Ubuntu)
		"boot/initramfs-" + v + ".img", // dracut (Fedora, RHEL)
		"boot/initrd-" + v,             // dracut on openSUSE
	}
	if k.Modules != "" {
		// kernel-install's layout, beside the modules (Fedora's
		// image-based variants).
		out = append(out, path.Join(k.Modules, "initramfs.img"))
		// Arch: mkinitcpio's preset names the image after the kernel
		// package, which the package writes into its modules directory.
		if p, err := securejoin.Resolve(root, path.Join(k.Modules, "pkgbase")); err == nil {
			if b, err := os.ReadFile(p); err == nil {
				if base := strings.TrimSpace(string(b)); base != "" && !strings.ContainsAny(base, "/\x00") {
					out = append(out, "boot/initramfs-"+base+".img")
				}
			}
		}
	}
	return out
}

// findImageInitrd (--initramfs image) finds the initramfs the image's
// generator built for the kernel being installed and checks that it holds
// dockroot's hook and that kernel's modules.
func (in *installer) findImageInitrd() error {
	if in.opts.Initramfs != InitramfsImage {
		return nil
	}
	kver := in.kernel.Version
	looked := imageInitrdPaths(in.root, in.kernel)
	for _, rel := range looked {
		file, err := securejoin.Resolve(in.root, rel)
		if err != nil {
			return err
		}
		fi, err := os.Stat(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		e := &ImageInitramfsError{KernelVersion: kver, File: "/" + rel}
		if !fi.Mode().IsRegular() {
			e.Reason = "is not a regular file"
			return e
		}
		l, err := initramfs.ListFile(file)
		if err != nil {
			e.Reason, e.Err = "cannot be read as an initramfs", err
			return e
		}
		hook, reason := checkHook(l, kver)
		if reason != "" {
			e.Reason = reason
			return e
		}
		in.initrd = file
		in.res.ImageInitrd = &ImageInitrd{Path: "/" + rel, Size: fi.Size(), Streams: l.Streams, Hook: hook}
		in.logf("initramfs %s of the image holds dockroot's hook (%s)", "/"+rel, strings.Join(hook, ", "))
		return nil
	}
	return &ImageInitramfsError{KernelVersion: kver, Looked: looked}
}

// checkHook says whether an initramfs can run dockroot: it holds the
// dockroot-init binary and something named for dockroot that the
// generator runs (initramfs-tools' scripts/local-premount/dockroot,
// mkinitcpio's hooks/dockroot, a dockroot*.service unit of a systemd
// initramfs, a dracut hook script), and, when it holds modules at all,
// those of kernel kver. It returns the dockroot files, or why not.
func checkHook(l *initramfs.Listing, kver string) (found []string, reason string) {
	var bin, runners []string
	for _, m := range l.Members {
		base := path.Base(m.Path)
		switch {
		case !m.Regular() || !strings.Contains(base, "dockroot"):
		case base == initName:
			bin = append(bin, "/"+m.Path)
		case strings.HasPrefix(m.Path, "etc/"), strings.HasSuffix(base, ".json"), strings.HasSuffix(base, ".conf"):
			// configuration, not something that runs
		default:
			runners = append(runners, "/"+m.Path)
		}
	}
	switch {
	case len(bin) == 0 && len(runners) == 0:
		return nil, "does not hold dockroot's hook: no " + initName + " and no dockroot hook script or unit in it"
	case len(bin) == 0:
		return nil, fmt.Sprintf("holds %s but no %s binary", strings.Join(runners, ", "), initName)
	case len(runners) == 0:
		return nil, fmt.Sprintf("holds %s but no hook script or unit that runs it", strings.Join(bin, ", "))
	}
	if kvs := l.KernelVersions(); len(kvs) > 0 && !slices.Contains(kvs, kver) {
		return nil, fmt.Sprintf("holds the modules of kernel %s, not of %s: it was built for another kernel", strings.Join(kvs, ", "), kver)
	}
	return append(bin, runners...), ""
}
