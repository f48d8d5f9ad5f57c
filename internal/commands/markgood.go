package commands

import (
	"flag"
	"fmt"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/toplevel"
)

func markGoodVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "mark-good",
		Summary: "record the booted image as good, so boot counting stops falling back from it",
		Usage:   "mark-good [--boot-json PATH]",
		Doc: `Run in the booted system once it works: dockroot-init counts every boot of
an image that is not marked good and, after dockroot.tries= of them, boots the
last good image instead. mark-good records the image this system booted (from
/run/dockroot/boot.json) as the last good one and ends its count.

The shipped unit dockroot-mark-good.service runs it after multi-user.target;
replace it with your own health check if "reached multi-user" is not enough.

It mounts the btrfs top level of the root device (subvolid=5) on a temporary
directory in a mount namespace of its own, updates .dockroot/state.json there
and unmounts it. A boot that used an existing layer as it was left
(dockroot.layer=, a hibernation image, dockroot.onfail=previous) booted no
image afresh: there is nothing to mark, and it says so and succeeds.`,
		Examples: []cli.Example{
			{Command: "mark-good", Doc: "this boot worked: trust its image"},
			{Command: "status", Doc: "see the boot count and the last good image"},
		},
		Setup: setupMarkGood,
	}
}

func setupMarkGood(fs *flag.FlagSet) func(*Context, []string) error {
	record := bootRecordArg(fs)
	return func(ctx *Context, args []string) error {
		rec, path, err := record(args)
		if err != nil {
			return err
		}
		img, why := bootedImage(rec)
		if why != "" {
			fmt.Fprintf(ctx.Stdout, "nothing to mark good: %s\n", why)
			return nil
		}
		dev, err := rootDevicePath(rec, path)
		if err != nil {
			return err
		}
		var st *bootstate.State
		err = withTopLevel(ctx, dev, func(top string) error {
			var err error
			st, err = bootstate.MarkGood(top, img)
			return err
		})
		if err != nil {
			return fmt.Errorf("%w; the boot counting state is unchanged, so this image still counts as untried", err)
		}
		fmt.Fprintf(ctx.Stdout, "marked %s good on %s: it is the image boot counting falls back to\n", img, dev)
		if st.FellBack != nil {
			fmt.Fprintf(ctx.Stdout, "%s still counts as failed (this boot fell back from it); `dockroot retry` gives it dockroot.tries= new boots\n", st.FellBack)
		}
		return nil
	}
}

// bootedImage returns the image a boot made its layer from, or why there
// is none to mark: a boot that mounted an existing layer as it was left
// says nothing about whether the image boots.
func bootedImage(rec *bootrecord.Record) (bootstate.Image, string) {
	mode := rec.LayerMode
	switch {
	case mode != "" && mode != string(config.LayerNew) || !rec.Layer.Fresh:
		why := fmt.Sprintf("this boot used the existing rw layer %s as it was left", rec.Layer.Subvolume)
		if rec.Layer.Reason != "" {
			why += " (" + rec.Layer.Reason + ")"
		}
		return bootstate.Image{}, why + ", not a fresh copy of an image"
	case rec.ImageID == "":
		return bootstate.Image{}, "the boot record names no image"
	}
	return bootstate.Image{ID: rec.ImageID, Ref: rec.Ref}, ""
}

// rootDevicePath is the root device node a boot record names.
func rootDevicePath(rec *bootrecord.Record, path string) (string, error) {
	if rec.RootDevicePath == "" {
		return "", fmt.Errorf("the boot record %s does not name the root device's node (root_device_path): it was written by an older dockroot-init; "+
			"rebuild the initramfs with this dockroot (dockroot initramfs) and reboot", path)
	}
	return rec.RootDevicePath, nil
}

// withTopLevel mounts the btrfs top level of dev privately for fn
// (toplevel.With); a failure to unmount after fn failed is printed.
func withTopLevel(ctx *Context, dev string, fn func(top string) error) error {
	return toplevel.With(dev, func(err error) { fmt.Fprintf(ctx.Stderr, "dockroot: %v\n", err) }, fn)
}
