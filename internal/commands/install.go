package commands

import (
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/initramfs"
	"github.com/dockroot/dockroot/internal/install"
)

func installVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "install",
		Summary: "copy an image's kernel and build its initramfs into a boot directory",
		Usage:   "install REF --boot-dir DIR [--docker-root DIR] [--containerd-root DIR] [--podman-root DIR] [--store auto|graphdriver|containerd|podman] [--initramfs dockroot|image] [--init PATH] [--kernel-version KVER] [--json]",
		Doc: `Reads image REF offline from the image store (Docker's data root or rootful
Podman's graph root, each with the btrfs storage driver; no daemon need
run), and writes into DIR/<slug>/, where <slug> is
the tag made file-name safe (desk:stable -> desk-stable):

  vmlinuz        the image's own kernel: /boot/vmlinuz-KVER or
                 /usr/lib/modules/KVER/vmlinuz, symlinks followed inside
                 the image
  initramfs.img  dockroot-init with the modules from the image's own
                 /lib/modules/KVER, so the kernel, the initramfs and the
                 booted system's modules are one build
  entry.json     what was installed, for 'dockroot menu'

--initramfs image installs the image's own initramfs instead of building
one: the file its generator built inside the image for that kernel
(/boot/initrd.img-KVER from update-initramfs, /boot/initramfs-KVER.img
from dracut, /boot/initramfs-PKGBASE.img from mkinitcpio), after checking
that it holds dockroot's hook (dockroot-init and the script or unit that
runs it) and that kernel's modules. The image's Dockerfile installs
dockroot's package and its distribution's generator; the initramfs then
brings LUKS, LVM and the rest, and boots with the same parameters.

REF must be a tag: the boot entry boots the tag. Run install again after
the tag moves to a new image; when DIR/<slug> already holds the same image's
kernel and an identical initramfs nothing is written ("up to date").
Otherwise the new files are made in DIR/.dockroot-staging and swapped in
whole, so DIR/<slug> never holds a kernel with another one's initramfs.

--store auto (the default) looks for REF in every store that exists, as the
boot's dockroot.store=auto does, and refuses a REF found in both; --store
graphdriver or --store podman reads that one store only.

The init binary is --init, else $DOCKROOT_INIT, else dockroot-init next to
this program.

--json prints what was installed as one JSON object (ref, image_id, store,
kernel_version, the files written, up_to_date), for programs.`,
		Examples: []cli.Example{
			{Command: "install desk:stable --boot-dir /boot/efi/dockroot",
				Doc: "install desk:stable's kernel on the ESP mounted at /boot/efi"},
			{Command: "install desk:testing --boot-dir /boot/efi/dockroot --docker-root /srv/docker",
				Doc: "from a data root other than /var/lib/docker"},
			{Command: "install desk:stable --boot-dir /boot/efi/dockroot --initramfs image",
				Doc: "use the initramfs the image built with dockroot's package installed"},
			{Command: "install localhost/desk:stable --boot-dir /boot/efi/dockroot --store podman",
				Doc: "from rootful Podman's store"},
			{Command: "install desk:stable --boot-dir /boot/efi/dockroot --store containerd --json",
				Doc: "from Docker's containerd image store, the result as JSON"},
			{Command: "install desk:stable --boot-dir /boot/dockroot && dockroot menu --bootloader grub --boot-dir /boot/dockroot --root LABEL=linux --rwlayer docker_rwlayer --docker-path var/lib/docker --grub-style cfg -o /boot/grub/custom.cfg",
				Doc: "then write the GRUB menu"},
		},
		Setup: setupInstall,
	}
}

func setupInstall(fs *flag.FlagSet) func(*Context, []string) error {
	var opts install.Options
	fs.StringVar(&opts.BootDir, "boot-dir", "", "write the kernel and initramfs under `DIR`/<tag> (required)")
	fs.StringVar(&opts.DockerRoot, "docker-root", install.DefaultDockerRoot, "the Docker data root `DIR` (dockerd --data-root)")
	storeFlags(fs, &opts.PodmanRoot, &opts.ContainerdRoot, &opts.Store)
	fs.StringVar(&opts.Initramfs, "initramfs", install.InitramfsDockroot, "`KIND` of initramfs: dockroot (build dockroot's own) or image (the image's own, built with dockroot's hook)")
	fs.StringVar(&opts.InitBinary, "init", "", "the static dockroot-init `PATH` to put in the initramfs")
	fs.StringVar(&opts.KernelVersion, "kernel-version", "", "install kernel `KVER` when the image has several (default: the newest)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(ctx *Context, args []string) error {
		switch {
		case len(args) == 0:
			return cli.Usagef("no image given: install REF --boot-dir DIR")
		case len(args) > 1:
			return cli.Usagef("unexpected argument %q (one image per install)", args[1])
		case opts.BootDir == "":
			return cli.Usagef("--boot-dir DIR is required")
		}
		if err := checkStore(opts.Store); err != nil {
			return err
		}
		if !slices.Contains(install.InitramfsKinds, opts.Initramfs) {
			return cli.Usagef("--initramfs %q: want %s", opts.Initramfs, strings.Join(install.InitramfsKinds, " or "))
		}
		opts.Ref = args[0]
		if opts.InitBinary == "" && opts.Initramfs == install.InitramfsDockroot {
			p, err := initramfs.LocateInits(ctx.Getenv)
			if err != nil {
				return err
			}
			opts.InitChoices = p
		}
		dockerRoot, err := filepath.Abs(opts.DockerRoot)
		if err != nil {
			return err
		}
		opts.DockerRoot = dockerRoot
		if opts.PodmanRoot, err = filepath.Abs(opts.PodmanRoot); err != nil {
			return err
		}
		if opts.ContainerdRoot, err = filepath.Abs(opts.ContainerdRoot); err != nil {
			return err
		}
		res, err := install.Run(ctx.Context(), opts)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(ctx.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(installJSON(res))
		}
		printInstall(ctx, res)
		return nil
	}
}

// installResult is install --json's object: the Result with the
// initramfs build summarised (its module list is long and internal).
type installResult struct {
	Ref           string `json:"ref"`
	ImageID       string `json:"image_id"`
	Store         string `json:"store"`
	KernelVersion string `json:"kernel_version"`
	KernelSource  string `json:"kernel_source"`
	Dir           string `json:"dir"`
	Kernel        string `json:"kernel"`
	Initrd        string `json:"initrd"`
	Entry         string `json:"entry"`
	KernelSize    int64  `json:"kernel_size"`
	// Initramfs is "dockroot" (built here) or "image" (the image's own).
	Initramfs     string   `json:"initramfs"`
	InitrdSize    int64    `json:"initrd_size"`
	Modules       int      `json:"modules,omitempty"`
	ImageInitrd   string   `json:"image_initrd,omitempty"` // its path in the image
	ImageInitHook []string `json:"image_initrd_hook,omitempty"`
	UpToDate      bool     `json:"up_to_date"`
}

func installJSON(res *install.Result) installResult {
	out := installResult{
		Ref: res.Ref, ImageID: res.ImageID, Store: res.Store, KernelVersion: res.KernelVersion, KernelSource: res.KernelSource,
		Dir: res.Dir, Kernel: res.Kernel, Initrd: res.Initrd, Entry: res.Entry, KernelSize: res.KernelSize, UpToDate: res.UpToDate,
	}
	if ir := res.Initramfs; ir != nil {
		out.Initramfs, out.InitrdSize, out.Modules = install.InitramfsDockroot, ir.Size, len(ir.Modules)
	}
	if ii := res.ImageInitrd; ii != nil {
		out.Initramfs, out.InitrdSize, out.ImageInitrd, out.ImageInitHook = install.InitramfsImage, ii.Size, ii.Path, ii.Hook
	}
	return out
}

func printInstall(ctx *Context, res *install.Result) {
	w := ctx.Stdout
	if res.UpToDate {
		fmt.Fprintf(w, "%s is up to date in %s (image %s, kernel %s); nothing written\n",
			res.Ref, res.Dir, shortImageID(res.ImageID), res.KernelVersion)
		return
	}
	store := ""
	if res.Store != "" {
		store = ", " + res.Store + " store"
	}
	fmt.Fprintf(w, "installed %s (image %s%s) into %s:\n", res.Ref, shortImageID(res.ImageID), store, res.Dir)
	fmt.Fprintf(w, "  %s  kernel %s from %s, %s\n", res.Kernel, res.KernelVersion, res.KernelSource, mib(res.KernelSize))
	if ii := res.ImageInitrd; ii != nil {
		fmt.Fprintf(w, "  %s  the image's own %s, %s %s, with dockroot's hook (%s)\n",
			res.Initrd, ii.Path, mib(ii.Size), strings.Join(ii.Streams, "+"), strings.Join(ii.Hook, ", "))
	}
	if ir := res.Initramfs; ir != nil {
		fmt.Fprintf(w, "  %s  %s %s, %d modules from the image's /lib/modules/%s\n",
			res.Initrd, mib(ir.Size), ir.Compression, len(ir.Modules), ir.KernelVersion)
	}
	fmt.Fprintf(w, "  %s\n", res.Entry)
	fmt.Fprintf(w, "run 'dockroot menu --boot-dir %s ...' to add it to the boot menu\n", filepath.Dir(res.Dir))
}
