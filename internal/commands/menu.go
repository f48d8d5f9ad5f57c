package commands

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/layout"
)

// Bootloaders `dockroot menu` renders for.
const (
	loaderGRUB        = bootmenu.LoaderGRUB
	loaderRefind      = bootmenu.LoaderRefind
	loaderSystemdBoot = bootmenu.LoaderSystemdBoot
)

// mountinfoPath is read to find how the bootloader names --boot-dir.
var mountinfoPath = "/proc/self/mountinfo"

func menuVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "menu",
		Summary: "write boot-menu entries for the installed image tags (GRUB, rEFInd, systemd-boot)",
		Usage: "menu --bootloader grub|refind|systemd-boot --root SPEC --rwlayer NAME [--docker-path P] [--podman-path P] [--containerd-path P] " +
			"[--toplayer SPEC --toplayer-path P] [--boot-dir DIR] [--loader-path P] [--default REF] [--append PARAM]... [--grub-style grub.d|cfg] [-o FILE|DIR|-]",
		Doc: `Writes one boot entry per image tag installed in --boot-dir by
'dockroot install', plus a "previous layer" entry. Each entry boots the tag's
own kernel and initramfs with root=SPEC rootflags=subvol=NAME
docker_path=P docker_image=REF [toplayer= toplayer_path=] rw. The previous-layer
entry adds dockroot.layer=previous: the init boots NAME.prev.1 as it was left,
without a fresh layer, using the default entry's kernel.

Output per bootloader:
  grub          an /etc/grub.d/ script (--grub-style grub.d, the default: install
                it executable as /etc/grub.d/42_dockroot and run update-grub), or
                grub.cfg syntax for /boot/grub/custom.cfg (--grub-style cfg, which
                also sets the default entry)
  refind        menuentry stanzas for refind.conf, or a file it includes
  systemd-boot  Boot Loader Specification files: -o DIR is the ESP (or XBOOTLDR)
                root and the files go to DIR/loader/entries/dockroot-*.conf;
                dockroot-*.conf files of tags no longer installed are removed

-o FILE replaces FILE atomically only when it is missing, empty, or a menu
dockroot menu wrote (its exact first lines, and a checksum of the rest). A
menu edited since is first kept as FILE.bak; a file dockroot did not write,
a symlink, a device, a fifo or a directory is refused and left as it is.

Kernel and initramfs paths are written as the bootloader sees them: from the
root of the filesystem holding --boot-dir (found in /proc/self/mountinfo,
including the btrfs subvolume it is mounted from). --loader-path overrides this.
Kernel parameters holding spaces are quoted for each loader; GRUB cannot pass
\ ' or " to the kernel, and no loader can pass " (the kernel has no escapes).`,
		Examples: []cli.Example{
			{Command: "menu --bootloader grub --root LABEL=linux --rwlayer @/docker_rwlayer --docker-path @/var/lib/docker -o /etc/grub.d/42_dockroot",
				Doc: "GRUB entries for every installed tag, then run update-grub"},
			{Command: "menu --bootloader systemd-boot --root UUID=0a1b... --rwlayer docker_rwlayer --boot-dir /efi/dockroot -o /efi",
				Doc: "systemd-boot entries on the ESP mounted at /efi"},
			{Command: "menu --bootloader refind --root LABEL=linux --rwlayer rw --toplayer LABEL=top --toplayer-path machines/desk --default desk:stable",
				Doc: "print rEFInd stanzas with a per-machine top layer"},
			{Command: "menu --bootloader grub --grub-style cfg --root /dev/vda --rwlayer rw --append console=ttyS0 -o /boot/grub/custom.cfg",
				Doc: "a custom.cfg with a serial console"},
		},
		Setup: setupMenu,
	}
}

func setupMenu(fs *flag.FlagSet) func(*Context, []string) error {
	var (
		p          bootmenu.Params
		extra      cli.Strings
		loader     string
		bootDir    string
		out        string
		grubStyle  string
		loaderPath string
	)
	fs.StringVar(&loader, "bootloader", "", "the `LOADER`: grub, refind or systemd-boot (required)")
	fs.StringVar(&p.Root, "root", "", "root= device `SPEC` of the btrfs holding Docker's data root and the layers: LABEL=, UUID=, /dev/NAME (required)")
	fs.StringVar(&p.RWLayer, "rwlayer", "", "the rw layer's `NAME`, for rootflags=subvol= (required)")
	fs.StringVar(&p.DockerPath, "docker-path", layout.DefaultDockerPath, "docker_path=: the `PATH` of Docker's data root relative to the btrfs top level")
	fs.StringVar(&p.PodmanPath, "podman-path", "", "podman_path=: the `PATH` of Podman's graph root relative to the btrfs top level, on entries of Podman images (default: the init's, "+layout.DefaultPodmanPath+")")
	fs.StringVar(&p.ContainerdPath, "containerd-path", "", "containerd_path=: the `PATH` of containerd's root relative to the btrfs top level, on entries of containerd-store images (default: the init's)")
	fs.StringVar(&p.Toplayer, "toplayer", "", "toplayer= device `SPEC` (default: the root device)")
	fs.StringVar(&p.ToplayerPath, "toplayer-path", "", "toplayer_path=: the top layer's `PATH` on that device")
	fs.StringVar(&bootDir, "boot-dir", "/boot/dockroot", "the `DIR` where 'dockroot install' put the kernels")
	fs.StringVar(&loaderPath, "loader-path", "", "`PATH` of --boot-dir as the bootloader sees it, e.g. /dockroot (default: from the mount table)")
	fs.StringVar(&p.Default, "default", "", "the default entry's image `REF` (default: the first installed)")
	fs.Var(&extra, "append", "add kernel parameter `PARAM` to every entry; repeatable")
	fs.StringVar(&grubStyle, "grub-style", bootmenu.GRUBScript, "GRUB output `STYLE`: grub.d or cfg")
	fs.StringVar(&out, "o", "-", "write to `FILE` (systemd-boot: the ESP root directory); - is standard output")

	return func(ctx *Context, args []string) error {
		if len(args) > 0 {
			return cli.Usagef("unexpected argument %q (flags only)", args[0])
		}
		switch {
		case loader == "":
			return cli.Usagef("--bootloader is required: grub, refind or systemd-boot")
		case loader != loaderGRUB && loader != loaderRefind && loader != loaderSystemdBoot:
			return cli.Usagef("--bootloader %q: want grub, refind or systemd-boot", loader)
		case p.Root == "":
			return cli.Usagef("--root SPEC is required (the root= device, e.g. LABEL=linux)")
		case p.RWLayer == "":
			return cli.Usagef("--rwlayer NAME is required (the rootflags=subvol= name of the rw layer)")
		case grubStyle != bootmenu.GRUBScript && grubStyle != bootmenu.GRUBConfig:
			return cli.Usagef("--grub-style %q: want grub.d or cfg", grubStyle)
		}
		p.Extra = extra

		if !hasInstalled(bootDir) {
			// Said before the loader path is looked up: it is the first thing to fix.
			if _, err := bootmenu.ReadInstalled(bootDir); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return &bootmenu.NoneInstalledError{BootDir: bootDir}
		}
		if loaderPath == "" {
			var err error
			if loaderPath, err = bootLoaderPath(bootDir); err != nil {
				return err
			}
		}
		p.LoaderPath = loaderPath
		m := bootmenu.Menu{Bootloader: loader, GRUBStyle: grubStyle, BootDir: bootDir, Out: out, Params: p}
		if out != "-" {
			abs, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			if m.BootDir, err = filepath.Abs(bootDir); err != nil {
				return err
			}
			m.Out = abs
		}
		if _, err := bootmenu.Generate(ctx.Context(), m, ctx.Stdout); err != nil {
			return err
		}
		// update and watch rewrite this menu the same way.
		return bootmenu.WriteMenuRecord(m)
	}
}

// hasInstalled says whether bootDir holds at least one installed tag.
func hasInstalled(bootDir string) bool {
	in, err := bootmenu.ReadInstalled(bootDir)
	return err == nil && len(in) > 0
}

// bootLoaderPath finds how a bootloader names bootDir.
func bootLoaderPath(bootDir string) (string, error) {
	abs, err := filepath.Abs(bootDir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return "", fmt.Errorf("boot directory %s: %w", bootDir, err)
	}
	mi, err := os.ReadFile(mountinfoPath)
	if err != nil {
		return "", fmt.Errorf("find the filesystem holding %s: %w; give --loader-path", bootDir, err)
	}
	lp, err := bootmenu.LoaderPath(mi, abs)
	if err != nil {
		return "", fmt.Errorf("find the filesystem holding %s: %w; give --loader-path", bootDir, err)
	}
	return lp, nil
}
