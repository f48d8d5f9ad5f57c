package commands

import (
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/watch"
)

func watchVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "watch",
		Summary: "follow dockerd's image events and keep the boot directory and menus in step with the tags",
		Usage:   "watch [--docker-host URL] [--boot-dir DIR] [--bootloader grub|refind|systemd-boot] [--debounce D]",
		Doc: `Runs until stopped (SIGTERM, SIGINT), as dist/systemd/dockroot-watch.service
does. At start, and after every burst of image events (tag, untag, delete,
pull, load, import; a build tags), it brings --boot-dir in step with
dockerd's tags, through the code of 'dockroot update':

  - a tag whose image carries a kernel gets it installed, as 'dockroot
    install' does, and installed again when the tag moves (docker build -t,
    docker pull, docker tag);
  - an installed tag dockerd no longer has (docker rmi) loses its entry and
    its kernel directory, except the tag of the image that runs now or was
    last good (boot record), whose entry stays;
  - the menus 'dockroot menu -o' recorded for --boot-dir are rewritten,
    entries first, kernels after, each file through a temporary name and a
    rename, never over a file dockroot did not write;
  - the running, last good and staged images stay protected from prune.

An image without a kernel gets no entry and no message. One line per change
goes to standard output (the journal, under systemd).`,
		Examples: []cli.Example{
			{Command: "watch --boot-dir /boot/efi/dockroot", Doc: "follow the local dockerd"},
			{Command: "watch --bootloader systemd-boot --debounce 5s", Doc: "rewrite only the systemd-boot entries, after 5 s of quiet"},
		},
		Setup: setupWatch,
	}
}

func setupWatch(fs *flag.FlagSet) func(*Context, []string) error {
	var (
		host, bootDir, loader, bootJSON, initBin string
		debounce                                 time.Duration
	)
	fs.StringVar(&host, "docker-host", "", "dockerd's API `URL` (default $DOCKER_HOST, else unix:///var/run/docker.sock)")
	fs.StringVar(&bootDir, "boot-dir", defaultBootDir, "the boot `DIR` holding the installed kernels")
	fs.StringVar(&loader, "bootloader", "", "rewrite only this `LOADER`'s recorded menu: grub, refind or systemd-boot")
	fs.StringVar(&bootJSON, "boot-json", layout.BootRecord, "the boot record `FILE` naming the running and last good images")
	fs.StringVar(&initBin, "init", "", "the static dockroot-init `PATH` for the initramfs")
	fs.DurationVar(&debounce, "debounce", watch.DefaultDebounce, "wait until dockerd has been quiet for `D` before acting")
	return func(ctx *Context, args []string) error {
		if len(args) > 0 {
			return cli.Usagef("unexpected argument %q (flags only)", args[0])
		}
		if loader != "" && loader != loaderGRUB && loader != loaderRefind && loader != loaderSystemdBoot {
			return cli.Usagef("--bootloader %q: want grub, refind or systemd-boot", loader)
		}
		e, err := connectEngine(ctx, host, bootDir, bootJSON, initBin)
		if err != nil {
			return err
		}
		defer e.Close()
		e.Bootloader = loader
		var mu sync.Mutex
		logf := func(format string, a ...any) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(ctx.Stdout, format+"\n", a...)
		}
		e.Log = logf
		logf("watching dockerd at %s for %s", e.Host, e.BootDir)
		return watch.Run(ctx.Context(), e, watch.Options{Debounce: debounce, Log: logf})
	}
}
