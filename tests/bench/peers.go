package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/initramfs"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// contender is one initramfs section 6 boots: how it was made and the
// kernel command line it boots the same disk with.
type contender struct {
	Name    string // short key, as in results.json
	Label   string // the report's row
	Initrd  string
	Cmdline string
	Note    string // how it was built
}

// Section 6's contenders, in report order.
const (
	cDockroot    = "dockroot"
	cDockrootAll = "dockroot-all"
	cShell       = "shell"
	cItoolsMost  = "itools-most"
	cItoolsDep   = "itools-dep"
	cItoolsHook  = "itools-hook"
	cDracut      = "dracut"
)

// peerSuite is the Debian release whose generators build the peers'
// images (the kernel is the one every contender boots).
const peerSuite = "bookworm"

// imageCmdline boots bench/boot:1 through dockroot (standalone or as a
// hook); subvolCmdline mounts the image's subvolume directly, as a peer
// without dockroot does with rootflags=subvol=.
func imageCmdline() string {
	return "root=/dev/vda rootflags=subvol=" + dockrootLayer + " rw docker_path=docker docker_image=" + bootImage
}

func subvolCmdline(subvol string) string {
	return "root=/dev/vda rootflags=subvol=" + subvol + " rw"
}

// dockrootAll builds dockroot's initramfs with --modules all: the same
// modules as the default, every one loaded in list order whatever the
// hardware (what dockroot did before the module table).
func (b *bench) dockrootAll(v *vmEnv) error {
	out := filepath.Join(b.work, "dockroot-all.img")
	if _, err := initramfs.Build(initramfs.Options{Output: out, Root: v.kernel.Root, KernelVersion: v.kernel.Version,
		InitBinary: v.init, ModuleMode: initramfs.ModulesAll}); err != nil {
		return fmt.Errorf("dockroot initramfs --modules all: %w", err)
	}
	v.contenders = append(v.contenders, contender{Name: cDockrootAll, Label: "dockroot, `--modules all`", Initrd: out,
		Cmdline: imageCmdline(), Note: "`dockroot initramfs --modules all`: the same modules, all loaded in list order"})
	return nil
}

// peers builds the distributions' own images for the same kernel, inside
// cached Debian roots with that kernel package installed (vmkit): Debian's
// initramfs-tools with MODULES=most and MODULES=dep, initramfs-tools with
// dockroot's hook inside, and dracut with host-only off. One that cannot
// be built is logged and left out of the run (the report says so).
func (b *bench) peers(v *vmEnv) {
	cache, err := vmkit.CacheDir()
	if err != nil {
		b.res.Missing["peers"] = err.Error()
		return
	}
	repo, err := vmkit.RepoRoot()
	if err != nil {
		b.res.Missing["peers"] = err.Error()
		return
	}
	var missing []string
	add := func(c contender, build func(out string) (string, error)) {
		start := time.Now()
		out := filepath.Join(b.work, c.Name)
		if err := os.MkdirAll(out, 0o755); err != nil {
			missing = append(missing, c.Name+": "+err.Error())
			return
		}
		initrd, err := build(out)
		if err != nil {
			b.logf("peer %s: not built: %v", c.Name, err)
			missing = append(missing, fmt.Sprintf("%s: %v", c.Name, firstLine(err.Error())))
			return
		}
		c.Initrd = initrd
		b.logf("peer %s: built in %.0f s: %s", c.Name, time.Since(start).Seconds(), initrd)
		v.contenders = append(v.contenders, c)
	}
	itools := func(files []vmkit.File) func(out string) (string, error) {
		return func(out string) (string, error) {
			root, err := vmkit.ItoolsRoot(cache, peerSuite, v.kernel)
			if err != nil {
				return "", err
			}
			initrd, _, err := vmkit.UpdateInitramfs(root, v.kernel.Version, files, out)
			return initrd, err
		}
	}
	// MODULES=dep looks at the machine that builds the image: its root's
	// filesystem and the drivers of the root's device. Run in a chroot it
	// stops ("failed to determine device for /"), so the contender is
	// MODULES=list with what dep picks when run on the VM itself: btrfs
	// and the virtio disk's drivers.
	depConf := []vmkit.File{
		{Path: "etc/initramfs-tools/conf.d/bench.conf", Data: "MODULES=list\n"},
		{Path: "etc/initramfs-tools/modules", Data: "virtio_pci\nvirtio_blk\nbtrfs\n"},
	}
	mostConf := []vmkit.File{{Path: "etc/initramfs-tools/conf.d/bench.conf", Data: "MODULES=most\n"}}
	hookFiles, err := vmkit.ItoolsFiles(repo, v.init)
	if err != nil {
		missing = append(missing, cItoolsHook+": "+err.Error())
	}
	add(contender{Name: cItoolsMost, Label: "initramfs-tools, `MODULES=most`", Cmdline: subvolCmdline(v.subvol),
		Note: "Debian " + peerSuite + "'s `update-initramfs` with `MODULES=most` (its default), mounting the image's subvolume"}, itools(mostConf))
	add(contender{Name: cItoolsDep, Label: "initramfs-tools, `MODULES=dep` (as `list`)", Cmdline: subvolCmdline(v.subvol),
		Note: "what `MODULES=dep` packs when run on the VM (`virtio_pci`, `virtio_blk`, `btrfs` and their dependencies), as `MODULES=list` in " +
			"`/etc/initramfs-tools/modules`: dep itself stops in the build root's chroot (\"failed to determine device for /\")"}, itools(depConf))
	if hookFiles != nil {
		add(contender{Name: cItoolsHook, Label: "initramfs-tools + dockroot's hook", Cmdline: imageCmdline(),
			Note: "`MODULES=most` with dockroot's initramfs-tools hook and boot script (`make install`'s files): snapshot, top layer, boot record"},
			itools(append(append([]vmkit.File(nil), mostConf...), hookFiles...)))
	}
	add(contender{Name: cDracut, Label: "dracut, host-only off", Cmdline: subvolCmdline(v.subvol),
		Note: "Debian " + peerSuite + "'s dracut (systemd in the initramfs) with `--no-hostonly`: every driver, mounting the image's subvolume"},
		func(out string) (string, error) {
			root, err := vmkit.DracutRoot(cache, peerSuite, v.kernel)
			if err != nil {
				return "", err
			}
			initrd, _, err := vmkit.Dracut(root, v.kernel.Version, []string{"--no-hostonly", "--force"}, nil, out)
			return initrd, err
		})
	if len(missing) > 0 {
		b.res.Missing["peers"] = "not built, so not booted: " + strings.Join(missing, "; ")
	}
}
