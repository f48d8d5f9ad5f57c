package commands

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/cli"
	"golang.org/x/sys/unix"
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
		err = withTopLevel(dev, func(top string) error {
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

// withTopLevel mounts the btrfs filesystem on dev at its top level
// (subvolid=5) on a temporary directory, runs fn with it, and unmounts it.
//
// The mount happens in a mount namespace of its own, on one OS thread that
// is never returned to the Go scheduler: nothing else on the system sees
// the top level (every layer and Docker's whole data root, read-write),
// and if dockroot dies halfway the kernel drops the mount with the thread.
// Go starts new threads from a template thread, not from a locked one, so
// no other thread inherits the namespace.
func withTopLevel(dev string, fn func(top string) error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		errc <- mountTopLevel(dev, fn)
	}()
	return <-errc
}

func mountTopLevel(dev string, fn func(top string) error) error {
	// CLONE_NEWNS is allowed in a threaded process (unlike CLONE_NEWUSER):
	// it copies only this thread's filesystem context. Where it is not
	// allowed (a container without CAP_SYS_ADMIN), mounting fails below
	// with the same cause.
	if err := unix.Unshare(unix.CLONE_NEWNS); err == nil {
		// systemd makes / shared: without this the mount would propagate
		// back into the system's namespace.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make the private mount namespace's mounts private: %w", err)
		}
	}
	base := "/run"
	if _, err := os.Stat(base); err != nil {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "dockroot-top.")
	if err != nil {
		return fmt.Errorf("make a mount point for the btrfs top level: %w", err)
	}
	defer os.Remove(dir)
	if err := unix.Mount(dev, dir, "btrfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "subvolid=5"); err != nil {
		return fmt.Errorf("mount %s on %s (btrfs, subvolid=5): %w", dev, dir, err)
	}
	ferr := fn(dir)
	if err := unix.Unmount(dir, 0); err != nil {
		uerr := fmt.Errorf("unmount %s: %w", dir, err)
		if ferr == nil {
			return uerr
		}
		fmt.Fprintf(os.Stderr, "dockroot: %v\n", uerr)
	}
	return ferr
}
