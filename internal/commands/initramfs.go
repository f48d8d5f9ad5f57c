package commands

import (
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/initramfs"
	"github.com/dockroot/dockroot/internal/layout"
)

func initramfsVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "initramfs",
		Summary: "build the initramfs that boots a Docker image with dockroot-init",
		Usage:   "initramfs -o FILE [--root DIR] [--kernel-version KVER] [--modules alias|all|hostonly] [--module NAME]... [--config FILE] [--docker-btrfs-json FILE] [--compress gzip|zstd|none] [--shell] [--init PATH]",
		Doc: `Writes an initramfs holding the static dockroot-init as /init, the kernel
modules to reach a btrfs root (btrfs with its checksum drivers, ext4, vfat,
virtio, SATA, NVMe, USB and SD/eMMC storage, each only if the kernel has it as
a module), closed over modules.dep and modules.softdep and listed in
dependency order in /etc/dockroot/modules.list.

--modules says which modules the init loads at boot:
  alias     (default) the filesystems, and the drivers whose aliases match
            the machine's devices (/sys/devices/**/modalias, then uevents),
            independent ones in parallel, from /etc/dockroot/modules.table;
  all       every module of the list, one after another;
  hostonly  like alias, but only the modules loaded on this machine now
            (/proc/modules) and the filesystems are packed: the smallest
            image, for this machine's hardware only.

The kernel is the newest under ROOT/lib/modules (or ROOT/usr/lib/modules)
unless --kernel-version names one. Compressed modules (.ko.xz, .ko.zst) are
stored decompressed. The output is written to a temporary file and renamed,
so a failed build leaves the old image in place.

The ancestor's /etc/docker-btrfs.json ({"docker_image": ..., "docker_tag":
...}) is baked in when it exists on this machine, as the ancestor's hook did,
so its kernel command line, which names no image, boots as before;
--docker-btrfs-json names another file, --docker-btrfs-json= none. Both
files are checked with the parser dockroot-init uses at boot.

The init binary is --init, else $DOCKROOT_INIT, else the dockroot-init next
to this program or in a directory beside it that is built for the kernel's
architecture (make build puts bin/dockroot-init and bin/arm64/dockroot-init
beside bin/dockroot). Files get mtime $SOURCE_DATE_EPOCH
(default 0), so equal inputs give an identical image.`,
		Examples: []cli.Example{
			{Command: "initramfs -o /boot/dockroot.img", Doc: "for the running system's newest kernel"},
			{Command: "initramfs -o out.img --root /srv/kernel-root --kernel-version 6.1.0-56-amd64 --compress zstd",
				Doc: "for an unpacked kernel package, zstd-compressed (Linux 5.9+)"},
			{Command: "initramfs -o out.img --module dm_crypt --module e1000e --config dockroot.json",
				Doc: "with extra modules and a baked-in config"},
			{Command: "initramfs -o rescue.img --shell", Doc: "with busybox as /bin/sh for dockroot.onfail=shell"},
		},
		Setup: setupInitramfs,
	}
}

func setupInitramfs(fs *flag.FlagSet) func(*Context, []string) error {
	var (
		opts    initramfs.Options
		modules cli.Strings
	)
	fs.StringVar(&opts.Output, "o", "", "write the initramfs to `FILE` (required)")
	fs.StringVar(&opts.Root, "root", "/", "use the kernel modules under `DIR`/lib/modules")
	fs.StringVar(&opts.KernelVersion, "kernel-version", "", "kernel release `KVER` (default: the newest under the root)")
	fs.StringVar(&opts.ModuleMode, "modules", initramfs.ModulesAlias, "which modules the init loads: `MODE` alias, all or hostonly")
	fs.Var(&modules, "module", "add module `NAME` (or alias) and its dependencies; repeatable")
	fs.StringVar(&opts.ConfigFile, "config", "", "bake JSON `FILE` in as /etc/dockroot.json")
	ancestor := fs.String("docker-btrfs-json", hostDockerBtrfsJSON,
		"bake the ancestor's `FILE` in as /etc/docker-btrfs.json (default: when it exists; empty: none)")
	fs.StringVar(&opts.Compress, "compress", initramfs.Gzip, "compress the image with `ALGO`: gzip, zstd (needs Linux 5.9+) or none")
	fs.BoolVar(&opts.Shell, "shell", false, "add the host's static busybox as /bin/sh, and USB keyboard modules")
	fs.StringVar(&opts.Busybox, "busybox", "", "with --shell, add the static busybox at `PATH`")
	fs.StringVar(&opts.InitBinary, "init", "", "the static dockroot-init `PATH` to use as /init")

	return func(ctx *Context, args []string) error {
		if len(args) > 0 {
			return cli.Usagef("unexpected argument %q (flags only)", args[0])
		}
		if opts.Output == "" {
			return cli.Usagef("-o FILE is required")
		}
		if err := initramfs.CheckCompression(opts.Compress); err != nil {
			return cli.Usagef("--compress: %v", err)
		}
		if err := initramfs.CheckModuleMode(opts.ModuleMode); err != nil {
			return cli.Usagef("--modules: %v", err)
		}
		opts.Modules = modules
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "docker-btrfs-json" })
		switch _, err := os.Stat(*ancestor); {
		case *ancestor == "":
		case err == nil:
			opts.DockerBtrfsJSON = *ancestor
			if !explicit {
				fmt.Fprintf(ctx.Stdout, "baking in %s (the ancestor's image setting); --docker-btrfs-json= leaves it out\n", *ancestor)
			}
		case explicit || !errors.Is(err, iofs.ErrNotExist):
			return fmt.Errorf("--docker-btrfs-json: %w", err)
		}
		if opts.InitBinary == "" {
			p, err := initramfs.LocateInits(ctx.Getenv)
			if err != nil {
				return err
			}
			opts.InitChoices = p
		}
		if s := ctx.Getenv("SOURCE_DATE_EPOCH"); s != "" {
			t, err := strconv.ParseInt(s, 10, 64)
			if err != nil || t < 0 {
				return fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds since 1970", s)
			}
			opts.ModTime = t
		}

		// initramfs.Build takes no context yet: a signal before it stops
		// the run; during it, the build finishes unless a second signal
		// ends the process (see cmd/dockroot).
		if err := ctx.Context().Err(); err != nil {
			return fmt.Errorf("stopped before building: %w", err)
		}
		res, err := initramfs.Build(opts)
		if err != nil {
			return err
		}
		printInitramfsSummary(ctx, res)
		return nil
	}
}

// hostDockerBtrfsJSON is where the ancestor's hook read its image setting,
// baked in by default when it exists.
var hostDockerBtrfsJSON = "/" + layout.DockerBtrfsJSON

func printInitramfsSummary(ctx *Context, res *initramfs.Result) {
	names := make([]string, len(res.Modules))
	for i, m := range res.Modules {
		names[i] = m.Name
	}
	w := ctx.Stdout
	fmt.Fprintf(w, "wrote %s: %s (%s compressed, %s unpacked)\n", res.Output, mib(res.Size), res.Compression, mib(res.UncompressedSize))
	fmt.Fprintf(w, "kernel %s, %d modules: %s\n", res.KernelVersion, len(res.Modules), strings.Join(names, " "))
	fmt.Fprintf(w, "init %s (%s)\n", res.Init, res.Arch)
	if res.ModuleMode == initramfs.ModulesAll {
		fmt.Fprintf(w, "modules mode %s: the init loads every module\n", res.ModuleMode)
	} else {
		fmt.Fprintf(w, "modules mode %s: the init loads the filesystems and what matches the devices (%d aliases)\n", res.ModuleMode, res.Aliases)
	}
	if len(res.Builtin) > 0 {
		fmt.Fprintf(w, "built into the kernel: %s\n", strings.Join(res.Builtin, " "))
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintf(w, "not available for this kernel, skipped: %s\n", strings.Join(res.Skipped, " "))
	}
	for _, warning := range res.Warnings {
		fmt.Fprintf(ctx.Stderr, "dockroot initramfs: warning: %s\n", warning)
	}
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
