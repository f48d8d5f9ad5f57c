package commands

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/gc"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
)

func gcVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "gc",
		Summary: "delete dockroot's old rw layers beyond --keep, and stale prepared bases",
		Usage:   "gc [--top DIR --rwlayer NAME] [--keep N] [--bases] [--adopted] [--dry-run] [--docker-path P] [--containerd-path P] [--podman-path P] [--boot-json PATH]",
		Doc: `Deletes the previous rw layers NAME.prev.N with N > --keep, with every
subvolume nested in them. It deletes only layers recorded as created by
dockroot (by subvolume ID and UUID in DIR/.dockroot/layers.json), never NAME
itself (the next boot rotates it), never the layer this system booted (found in
the boot record and by comparing it with the mounted /), and never anything
in an image store (Docker's data root, a system containerd's root, Podman's
graph root). Everything else is listed with the reason it stays.
A layer left unfinished by an interrupted boot (NAME.dockroot-tmp) goes too,
unless it is the last boot's layer, which the next boot puts back. So does
NAME.failed, the layer of the last boot of an image on trial that was never
marked good (kept apart so that NAME.prev.1 stays the last good boot's layer),
unless it is the layer this system booted. The layer adopted from the
ancestor hook (NAME.adopted) goes only with --adopted.

It also deletes the prepared bases (DIR/.dockroot/bases, see dockroot.cache=)
whose image subvolume is gone, which would otherwise keep that image's data
on the disk; --bases deletes every base (the next boot of each image copies
its top layer again and keeps a new one).

Each prepared base is listed with the store its image is in (graphdriver,
containerd, podman), found from the image subvolume's path.

On a system dockroot booted, gc finds everything in the boot record
(/run/dockroot/boot.json): the rw layer's NAME, docker_path=,
containerd_path= and podman_path= from the command line it booted with, and the root device, whose btrfs top level it
mounts privately (no other process sees it) for the time of the run, as
mark-good does. Elsewhere, give DIR, where the btrfs top level is mounted
(mount -o subvolid=5 DEVICE DIR), and NAME. --dry-run prints the plan and
changes nothing.

With --boot-dir DIR it also cleans what 'dockroot update' and 'dockroot watch'
leave: the kernel and initramfs directories of tags dockerd no longer has
(never the image that runs now or the last good one, never a directory
without dockroot's entry.json, never a file dockroot did not write), staging
directories of interrupted installs, and the protective tags
(dockroot/keep:ROLE) and containers (dockroot-keep-*) of images that no longer
run and are no longer the last good one; the recorded menus are rewritten
first, so none names a removed kernel.`,
		Examples: []cli.Example{
			{Command: "gc --dry-run", Doc: "on a system dockroot booted: what would go, keeping one previous layer"},
			{Command: "gc --bases", Doc: "also delete every prepared base"},
			{Command: "gc --top /mnt/top --rwlayer @/docker_rwlayer --dry-run", Doc: "with the top level mounted at /mnt/top, from another system"},
			{Command: "gc --top /mnt/top --rwlayer @/docker_rwlayer --keep 0", Doc: "delete every previous layer"},
		},
		Setup: setupGC,
	}
}

func setupGC(fs *flag.FlagSet) func(*Context, []string) error {
	var (
		top, name, bootJSON string
		paths               gc.StorePaths
		keep                int
		o                   gcFlags
		bootDir, host       string
	)
	fs.StringVar(&bootDir, "boot-dir", "", "also clean the boot `DIR` and dockerd: kernels of tags dockerd no longer has, staging leftovers, protective tags and containers no longer needed")
	fs.StringVar(&host, "docker-host", "", "with --boot-dir: dockerd's API `URL` (default $DOCKER_HOST, else the default socket)")
	fs.StringVar(&top, "top", "", "`DIR` where the btrfs top level is mounted (default: mount it privately from the boot record's root device)")
	fs.StringVar(&name, "rwlayer", "", "the rw layer's `NAME`, as in rootflags=subvol= (default: the boot record's)")
	fs.IntVar(&keep, "keep", 1, "keep the `N` newest previous layers")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the plan, delete nothing")
	fs.BoolVar(&o.allBases, "bases", false, "delete every prepared base, not only those whose image is gone")
	fs.BoolVar(&o.adopted, "adopted", false, "also delete NAME.adopted, the ancestor hook's layer that dockroot adopted and keeps until asked")
	fs.StringVar(&paths.Docker, "docker-path", layout.DefaultDockerPath, "`PATH` of Docker's data root relative to the top level; never touched")
	fs.StringVar(&paths.Containerd, "containerd-path", layout.DefaultContainerdPath, "`PATH` of a system containerd's root relative to the top level; never touched")
	fs.StringVar(&paths.Podman, "podman-path", layout.DefaultPodmanPath, "`PATH` of rootful Podman's graph root relative to the top level; never touched")
	fs.StringVar(&bootJSON, "boot-json", layout.BootRecord, "the boot record `FILE` naming the booted layer; with --top and --rwlayer a missing one is fine")
	return func(ctx *Context, args []string) error {
		switch {
		case len(args) > 0:
			return cli.Usagef("unexpected argument %q", args[0])
		case keep < 0:
			return cli.Usagef("--keep %d: want a number >= 0", keep)
		}
		run := func(top string) error {
			return runGC(ctx, top, name, paths, bootJSON, keep, o)
		}
		if bootDir != "" {
			if err := gcBootDir(ctx, host, bootDir, bootJSON, o.dryRun); err != nil {
				return err
			}
		}
		if top != "" && name != "" {
			return run(top)
		}
		if _, err := os.Stat(bootJSON); bootDir != "" && errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(ctx.Stdout, "rw layers: not looked at (no boot record %s; give --top DIR --rwlayer NAME)\n", bootJSON)
			return nil
		}
		rec, err := readBootRecord(bootJSON)
		if err != nil {
			return fmt.Errorf("%w; gc finds the btrfs top level and the rw layer there, or give both: gc --top DIR --rwlayer NAME", err)
		}
		cfg, _ := config.Load(rec.Cmdline, nil) // only rootflags= and docker_path= are read; the rest may be incomplete
		if name == "" {
			if cfg == nil || cfg.Subvol == "" {
				return fmt.Errorf("the boot record %s does not say which rw layer booted (no rootflags=subvol= in %q): give --rwlayer NAME", bootJSON, rec.Cmdline)
			}
			name = cfg.Subvol
		}
		explicit := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
		if cfg != nil {
			for _, p := range []struct {
				flag       string
				dst        *string
				fromRecord string
			}{{"docker-path", &paths.Docker, cfg.DockerPath}, {"containerd-path", &paths.Containerd, cfg.ContainerdPath}, {"podman-path", &paths.Podman, cfg.PodmanPath}} {
				if !explicit[p.flag] && p.fromRecord != "" {
					*p.dst = p.fromRecord
				}
			}
		}
		if top != "" {
			return run(top)
		}
		dev, err := rootDevicePath(rec, bootJSON)
		if err != nil {
			return err
		}
		fmt.Fprintf(ctx.Stdout, "btrfs top level of %s, rw layer %s, docker_path=%s containerd_path=%s podman_path=%s (from %s)\n",
			dev, name, paths.Docker, paths.Containerd, paths.Podman, bootJSON)
		return withTopLevel(ctx, dev, run)
	}
}

// gcFlags are gc's switches.
type gcFlags struct{ dryRun, allBases, adopted bool }

// runGC plans and, unless o.dryRun, carries out gc on the btrfs top level
// mounted at top.
func runGC(ctx *Context, top, name string, paths gc.StorePaths, bootJSON string, keep int, o gcFlags) error {
	l := &rwlayer.Layers{Top: top, Name: name, Keep: keep, DockerPath: paths.Docker, StorePaths: paths.Others(),
		Log: func(format string, args ...any) { fmt.Fprintf(ctx.Stdout, format+"\n", args...) }}
	layers, err := l.List()
	if err != nil {
		return err
	}
	booted, err := bootedLayer(bootJSON)
	if err != nil {
		return err
	}
	plan := &gc.Plan{Layers: gc.PlanLayers(layers, keep, o.adopted, booted, gc.SameAsRoot)}
	printGCPlan(ctx.Stdout, plan.Layers)
	plan.Bases, err = gc.PlanBases(&rwlayer.Bases{Top: top}, top, o.allBases)
	if err != nil {
		return err
	}
	for _, b := range plan.Bases {
		verb := "keep  "
		if b.Delete {
			verb = "delete"
		}
		store := ""
		if s := paths.StoreOf(b.Base.Key.ImageSubvol); s != "" {
			store = " from the " + s + " store"
		}
		fmt.Fprintf(ctx.Stdout, "%s base %s (%s%s, made %s): %s\n", verb, b.Base.Name, orDash(b.Base.Key.Ref), store, b.Base.Created.Format(time.RFC3339), b.Why)
	}
	if o.dryRun {
		fmt.Fprintln(ctx.Stdout, "dry run: nothing deleted")
		return nil
	}
	n, nb, err := gc.Execute(ctx.Context(), l, plan)
	if err != nil {
		return err
	}
	fmt.Fprintf(ctx.Stdout, "deleted %d layers and %d prepared bases\n", n, nb)
	return nil
}

// bootedLayer reads the layer this system booted from the boot record at
// path; nil when there is none.
func bootedLayer(path string) (*gc.Booted, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	rec, err := readBootRecord(path)
	if err != nil {
		return nil, fmt.Errorf("%w; gc must know the booted layer to spare it: give --boot-json of this boot", err)
	}
	return &gc.Booted{Subvolume: filepath.Clean("/" + rec.Layer.Subvolume)[1:], SubvolID: rec.Layer.SubvolID}, nil
}

func printGCPlan(w io.Writer, plan []gc.LayerPlan) {
	if len(plan) == 0 {
		fmt.Fprintln(w, "no rw layers found")
		return
	}
	table := [][]string{{"LAYER", "SUBVOLUME", "CREATED", "IMAGE", "ACTION"}}
	for _, p := range plan {
		created := "-"
		if !p.Layer.Created.IsZero() {
			created = p.Layer.Created.UTC().Format("2006-01-02 15:04")
		}
		id := "-"
		if p.Layer.SubvolID != 0 {
			id = fmt.Sprint(p.Layer.SubvolID)
		}
		table = append(table, []string{p.Layer.Name, id, created, shortImageID(p.Layer.Image), p.Why})
	}
	writeTable(w, table)
}

// gcBootDir is gc's boot-directory part (update.Engine.Clean): it needs
// no btrfs top level, only dockerd and the boot directory.
func gcBootDir(ctx *Context, host, bootDir, bootJSON string, dryRun bool) error {
	e, err := connectEngine(ctx, host, bootDir, bootJSON, "-")
	if err != nil {
		return err
	}
	defer e.Close()
	e.Log = func(format string, a ...any) { fmt.Fprintf(ctx.Stdout, format+"\n", a...) }
	changes, err := e.Clean(ctx.Context(), dryRun)
	for _, c := range changes {
		fmt.Fprintln(ctx.Stdout, c)
	}
	return err
}
