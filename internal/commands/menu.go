package commands

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dockroot/dockroot/internal/atomicfile"
	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/layout"
)

// Bootloaders `dockroot menu` renders for.
const (
	loaderGRUB        = "grub"
	loaderRefind      = "refind"
	loaderSystemdBoot = "systemd-boot"
)

// mountinfoPath is read to find how the bootloader names --boot-dir.
var mountinfoPath = "/proc/self/mountinfo"

func menuVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "menu",
		Summary: "write boot-menu entries for the installed image tags (GRUB, rEFInd, systemd-boot)",
		Usage: "menu --bootloader grub|refind|systemd-boot --root SPEC --rwlayer NAME [--docker-path P] " +
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

		installed, err := bootmenu.ReadInstalled(bootDir)
		if errors.Is(err, os.ErrNotExist) {
			installed, err = nil, nil
		}
		if err != nil {
			return err
		}
		if len(installed) == 0 {
			return fmt.Errorf("no kernels installed in %s: install one per image tag first, e.g. `dockroot install desk:stable --boot-dir %s`, then run menu again", bootDir, bootDir)
		}
		if loaderPath == "" {
			loaderPath, err = bootLoaderPath(bootDir)
			if err != nil {
				return err
			}
		}
		p.LoaderPath = loaderPath
		entries, err := bootmenu.Entries(installed, p)
		if err != nil {
			return err
		}
		// A cancelled run writes nothing rather than half the entries.
		if err := ctx.Context().Err(); err != nil {
			return fmt.Errorf("stopped before writing: %w", err)
		}
		switch loader {
		case loaderSystemdBoot:
			return writeBLS(ctx, entries, out)
		case loaderGRUB:
			var b bytes.Buffer
			if err := bootmenu.RenderGRUB(&b, entries, grubStyle); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if grubStyle == bootmenu.GRUBScript {
				mode = 0o755 // grub-mkconfig runs only executable scripts
			}
			return writeMenu(ctx, out, b.Bytes(), mode, entries)
		default:
			var b bytes.Buffer
			if err := bootmenu.RenderRefind(&b, entries); err != nil {
				return err
			}
			return writeMenu(ctx, out, b.Bytes(), 0o644, entries)
		}
	}
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

func writeMenu(ctx *Context, out string, data []byte, mode os.FileMode, entries []bootmenu.Entry) error {
	if out == "-" {
		_, err := ctx.Stdout.Write(data)
		return err
	}
	if err := checkOverwrite(out); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(out, data, mode); err != nil {
		return err
	}
	fmt.Fprintf(ctx.Stdout, "wrote %s: %s\n", out, describeEntries(entries))
	return nil
}

// generatedMark is in the first lines of every menu file dockroot writes.
const generatedMark = "generated by `dockroot menu"

// checkOverwrite refuses to replace a file that dockroot menu did not
// write: -o /boot/grub/custom.cfg may hold the user's own entries.
func checkOverwrite(out string) error {
	data, err := os.ReadFile(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("-o %s: %w", out, err)
	}
	head := data
	if len(head) > 512 {
		head = head[:512]
	}
	if len(bytes.TrimSpace(data)) == 0 || bytes.Contains(head, []byte(generatedMark)) {
		return nil
	}
	return fmt.Errorf("-o %s: the file exists and dockroot menu did not write it (its first lines lack %q); "+
		"nothing written, so your entries there are safe: write the menu to a file of its own (e.g. /etc/grub.d/42_dockroot), "+
		"or move the file away first", out, generatedMark+"`")
}

func describeEntries(entries []bootmenu.Entry) string {
	var names []string
	def := ""
	for _, e := range entries {
		if e.Previous {
			names = append(names, "previous layer")
			continue
		}
		names = append(names, e.Ref)
		if e.Default {
			def = e.Ref
		}
	}
	return fmt.Sprintf("%d entries (%s), default %s", len(entries), strings.Join(names, ", "), def)
}

// writeBLS writes the entries under ESP/loader/entries and removes
// dockroot's entries for tags no longer installed; other files there are
// the user's and stay.
func writeBLS(ctx *Context, entries []bootmenu.Entry, out string) error {
	files, err := bootmenu.RenderBLS(entries)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if out == "-" {
		for _, n := range names {
			if _, err := fmt.Fprintf(ctx.Stdout, "# ==> %s <==\n%s", n, files[n]); err != nil {
				return err
			}
		}
		return nil
	}
	if fi, err := os.Stat(out); err != nil || !fi.IsDir() {
		return fmt.Errorf("-o %s: for systemd-boot give the ESP (or XBOOTLDR) root directory, e.g. /efi or /boot/efi: %v", out, errOrNotDir(err))
	}
	dir := filepath.Join(out, filepath.FromSlash(bootmenu.BLSDir))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for _, n := range names {
		if err := atomicfile.WriteFile(filepath.Join(out, filepath.FromSlash(n)), files[n], 0o644); err != nil {
			return err
		}
		fmt.Fprintf(ctx.Stdout, "wrote %s\n", filepath.Join(out, filepath.FromSlash(n)))
	}
	stale, err := filepath.Glob(filepath.Join(dir, bootmenu.IDPrefix+"*.conf"))
	if err != nil {
		return err
	}
	for _, s := range stale {
		rel := bootmenu.BLSDir + "/" + filepath.Base(s)
		if _, ours := files[rel]; ours {
			continue
		}
		if err := os.Remove(s); err != nil {
			return fmt.Errorf("remove the entry of a tag no longer installed: %w", err)
		}
		fmt.Fprintf(ctx.Stdout, "removed %s (no longer installed)\n", s)
	}
	for _, e := range entries {
		if e.Default {
			fmt.Fprintf(ctx.Stdout, "%s; to boot it by default: bootctl set-default %s.conf (or \"default %s.conf\" in %s)\n",
				describeEntries(entries), e.ID, e.ID, filepath.Join(out, "loader", "loader.conf"))
		}
	}
	return nil
}

func errOrNotDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("not a directory")
}
