package commands

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/initramfs"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/update"
	"golang.org/x/sys/unix"
)

// defaultBootDir is where install, menu, update, watch and status look for
// the installed kernels when --boot-dir is not given.
const defaultBootDir = "/boot/dockroot"

func updateVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "update",
		Summary: "pull the images that have boot entries and stage new ones for the next boot",
		Usage:   "update [REF...] [--docker-host URL] [--boot-dir DIR] [--bootloader grub|refind|systemd-boot] [--dry-run] [--json]",
		Doc: `Pulls each REF through dockerd's API (default: every tag installed in
--boot-dir, or else the image this system booted). When the pulled image is
the one the boot entry already boots, it says "unchanged" and does nothing
else. When a new image arrived, it installs its kernel and initramfs as
'dockroot install' does, rewrites the menus 'dockroot menu -o' wrote for this
boot directory (only --bootloader's, when given; never a file dockroot did not
write) and records the update as staged for the next boot in
DIR/.dockroot-update.json; 'dockroot status' shows it.

The entry boots the tag, so the next boot boots the new image. Boot counting
(dockroot.tries=) falls back to the last good image when the new one never
reaches 'dockroot mark-good'. That image, and the one running now, are kept
from 'docker image prune -a' and 'docker rmi' by a tag (dockroot/keep:ROLE)
and a created, never started container (dockroot-keep-ROLE-ID) of dockroot's
own; 'dockroot gc --boot-dir DIR' removes them once they are not needed.

A failed pull changes nothing. When the new kernel cannot be installed (a
full disk, a broken image), the tag is moved back to the image it named, so
the entry and the image stay as they were. Exit status 1 when any REF failed.`,
		Examples: []cli.Example{
			{Command: "update", Doc: "pull every installed tag; stage what changed"},
			{Command: "update --dry-run", Doc: "ask the registry what would change, pull nothing"},
			{Command: "update registry.example/desk:stable --boot-dir /boot/efi/dockroot --bootloader systemd-boot",
				Doc: "one reference, rewriting only the systemd-boot entries"},
		},
		Setup: setupUpdate,
	}
}

func setupUpdate(fs *flag.FlagSet) func(*Context, []string) error {
	var (
		host, bootDir, loader, bootJSON, initBin string
		dryRun, asJSON                           bool
	)
	fs.StringVar(&host, "docker-host", "", "dockerd's API `URL` (default $DOCKER_HOST, else unix:///var/run/docker.sock)")
	fs.StringVar(&bootDir, "boot-dir", defaultBootDir, "the boot `DIR` holding the installed kernels")
	fs.StringVar(&loader, "bootloader", "", "rewrite only this `LOADER`'s recorded menu: grub, refind or systemd-boot")
	fs.BoolVar(&dryRun, "dry-run", false, "ask the registry what changed; pull, install and write nothing")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.StringVar(&bootJSON, "boot-json", layout.BootRecord, "the boot record `FILE` naming the running and last good images")
	fs.StringVar(&initBin, "init", "", "the static dockroot-init `PATH` for the initramfs")
	return func(ctx *Context, args []string) error {
		if loader != "" && loader != loaderGRUB && loader != loaderRefind && loader != loaderSystemdBoot {
			return cli.Usagef("--bootloader %q: want grub, refind or systemd-boot", loader)
		}
		e, err := connectEngine(ctx, host, bootDir, bootJSON, initBin)
		if err != nil {
			return err
		}
		defer e.Close()
		e.Bootloader = loader
		e.Log = func(format string, a ...any) { fmt.Fprintf(ctx.Stderr, format+"\n", a...) }
		progress := ctx.Stdout
		if asJSON {
			progress = ctx.Stderr
		}
		res, err := e.Run(ctx.Context(), update.Options{Refs: args, DryRun: dryRun, Progress: progress, Terminal: isTerminal(progress)})
		if res != nil {
			if asJSON {
				enc := json.NewEncoder(ctx.Stdout)
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(res); jerr != nil {
					return jerr
				}
			} else {
				printUpdate(ctx, res, e.BootDir)
			}
		}
		var re *update.RefError
		if errors.As(err, &re) {
			return fmt.Errorf("%d of %d references failed; their boot entries and images are as they were", len(re.Refs), len(res.Refs))
		}
		return err
	}
}

// connectEngine connects to dockerd and sets up the engine for bootDir.
func connectEngine(ctx *Context, host, bootDir, bootJSON, initBin string) (*update.Engine, error) {
	if host == "" {
		host = ctx.Getenv("DOCKER_HOST")
	}
	abs, err := filepath.Abs(bootDir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("boot directory %s: %v; give --boot-dir of the directory 'dockroot install' writes to", bootDir, errOrNotDir(err))
	}
	var choices []string
	if initBin == "" {
		if choices, err = initramfs.LocateInits(ctx.Getenv); err != nil {
			return nil, err
		}
	}
	e, err := update.Connect(ctx.Context(), host)
	if err != nil {
		return nil, err
	}
	e.BootDir, e.BootRecord, e.InitBinary, e.InitChoices = abs, bootJSON, initBin, choices
	return e, nil
}

func printUpdate(ctx *Context, res *update.Result, bootDir string) {
	for _, r := range res.Refs {
		switch r.Outcome {
		case update.Unchanged:
			fmt.Fprintf(ctx.Stdout, "%s: unchanged (image %s); nothing to do\n", r.Ref, shortImageID(r.After))
		case update.OutcomeStaged:
			fmt.Fprintf(ctx.Stdout, "%s: staged for the next boot: image %s (was %s), kernel and initramfs in %s\n",
				r.Ref, shortImageID(r.After), shortImageID(r.Before), bootDir)
		case update.WouldStage:
			fmt.Fprintf(ctx.Stdout, "%s: the registry has %s; 'dockroot update' would pull and stage it\n", r.Ref, r.After)
		case update.Failed:
			fmt.Fprintf(ctx.Stdout, "%s: FAILED: %s\n", r.Ref, r.Error)
		}
	}
	staged := false
	for _, r := range res.Refs {
		staged = staged || r.Outcome == update.OutcomeStaged
	}
	for _, m := range res.Menus {
		fmt.Fprintf(ctx.Stdout, "wrote %s\n", m)
	}
	if staged && len(res.Menus) == 0 {
		fmt.Fprintf(ctx.Stdout, "no menu recorded in %s, none rewritten: entries already there boot the new kernels (same paths); "+
			"run 'dockroot menu ... -o FILE' once to have update rewrite it\n", bootDir)
	}
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func errOrNotDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("not a directory")
}
