package commands

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dockroot/dockroot/internal/atomicfile"
	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/layout"
	"golang.org/x/sys/unix"
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
	edited, perm, err := checkOverwrite(out)
	if err != nil {
		return err
	}
	if edited != nil {
		bak := out + ".bak"
		if err := keepBackup(out, bak, edited, perm); err != nil {
			return err
		}
		fmt.Fprintf(ctx.Stdout, "kept %s as %s: it was edited after dockroot menu wrote it; move what you added to a file of your own (dockroot menu rewrites %s whole)\n", out, bak, out)
	}
	if err := atomicfile.WriteFile(out, data, mode); err != nil {
		return err
	}
	fmt.Fprintf(ctx.Stdout, "wrote %s: %s\n", out, describeEntries(entries))
	return nil
}

// maxMenuSize bounds how much of a file that starts with dockroot's header
// is read to check it: a menu of a thousand entries is under 1 MiB.
const maxMenuSize = 4 << 20

// checkOverwrite decides whether -o may replace out: a missing file, an
// empty regular file, or a menu dockroot wrote and nobody edited may go;
// a menu dockroot wrote that was edited since may go once kept, so its
// content comes back as edited (with its mode); anything else is refused.
// -o /boot/grub/custom.cfg may hold the user's own entries, and -o
// /dev/sda must neither be read whole nor replaced.
func checkOverwrite(out string) (edited []byte, perm os.FileMode, err error) {
	fi, err := os.Lstat(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("-o %s: %w", out, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, notRegular(out, fi.Mode())
	}
	data, complete, err := readRegular(out, bootmenu.HeaderLen)
	if err != nil {
		return nil, 0, err
	}
	if complete && len(bytes.TrimSpace(data)) == 0 {
		return nil, 0, nil
	}
	if !bootmenu.HasMenuHeader(data) {
		return nil, 0, fmt.Errorf("-o %s: the file exists and dockroot menu did not write it (it does not start with the header lines dockroot menu writes); "+
			"nothing written, so your entries there are safe: write the menu to a file of its own (e.g. /etc/grub.d/42_dockroot), "+
			"or move the file away first", out)
	}
	data, complete, err = readRegular(out, maxMenuSize)
	if err != nil {
		return nil, 0, err
	}
	if !complete {
		return nil, 0, fmt.Errorf("-o %s: the file starts with dockroot menu's header but holds more than %d MiB, far more than any menu: nothing written; move it away first", out, maxMenuSize>>20)
	}
	if bootmenu.ClassifyMenu(data) == bootmenu.MenuGenerated {
		return nil, 0, nil
	}
	return data, fi.Mode().Perm(), nil
}

// readRegular reads up to limit bytes of the regular file path and says
// whether that was all of it. It opens without following a symlink and
// without blocking (a fifo swapped in after the caller's Lstat would
// otherwise block the open until a writer comes), and checks on the open
// file that it is still a regular file before reading.
func readRegular(path string, limit int) (data []byte, complete bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ELOOP) {
		if fi, lerr := os.Lstat(path); lerr == nil {
			return nil, false, notRegular(path, fi.Mode())
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("-o %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("-o %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, false, notRegular(path, fi.Mode())
	}
	data, err = io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, false, fmt.Errorf("-o %s: read: %w", path, err)
	}
	if len(data) > limit {
		return data[:limit], false, nil
	}
	return data, true, nil
}

// notRegular refuses -o path of the given type, naming it and, for a
// symlink, where the real file is.
func notRegular(path string, mode os.FileMode) error {
	if mode&os.ModeSymlink != 0 {
		target, _ := os.Readlink(path)
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fmt.Errorf("-o %s is a symlink to %s, which does not resolve (%v): nothing written; -o wants the real path of the file", path, target, err)
		}
		return fmt.Errorf("-o %s is a symlink to %s: nothing written; -o wants the real path, so that the link stays: -o %s", path, target, real)
	}
	return fmt.Errorf("-o %s is a %s, not a regular file: nothing written; give the path of the menu file (e.g. /etc/grub.d/42_dockroot), or -o - for standard output", path, fileType(mode))
}

func fileType(mode os.FileMode) string {
	switch {
	case mode.IsDir():
		return "directory"
	case mode&os.ModeCharDevice != 0:
		return "character device"
	case mode&os.ModeDevice != 0:
		return "block device"
	case mode&os.ModeNamedPipe != 0:
		return "fifo (named pipe)"
	case mode&os.ModeSocket != 0:
		return "socket"
	}
	return fmt.Sprintf("file of type %v", mode.Type())
}

// keepBackup writes edited, the content of out, to bak before out is
// replaced. An existing bak holding something else is an earlier edit
// dockroot kept: it is refused rather than overwritten. bak is never
// executable: grub-mkconfig runs every executable file in /etc/grub.d
// that is not a packaging leftover (grub-mkconfig_lib
// grub_file_is_not_garbage), 42_dockroot.bak included.
func keepBackup(out, bak string, edited []byte, perm os.FileMode) error {
	fi, err := os.Lstat(bak)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("-o %s: keep the edited file as %s: %w", out, bak, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("-o %s: it was edited after dockroot menu wrote it, and %s, where it would be kept, is a %s: nothing written; move %s away, then run again",
			out, bak, fileType(fi.Mode()), bak)
	default:
		old, complete, err := readRegular(bak, len(edited))
		if err != nil {
			return err
		}
		if complete && bytes.Equal(old, edited) {
			return nil
		}
		return fmt.Errorf("-o %s: it was edited after dockroot menu wrote it, and %s already holds an earlier copy that differs: nothing written; "+
			"move what you need from both to a file of your own, remove %s, then run again", out, bak, bak)
	}
	return atomicfile.WriteFile(bak, edited, perm&^0o111)
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
