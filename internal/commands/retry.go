package commands

import (
	"flag"
	"fmt"

	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/cli"
)

func retryVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "retry",
		Summary: "give the image boot counting gave up on new tries",
		Usage:   "retry [--boot-json PATH]",
		Doc: `After dockroot.tries= boots of an image that never reached mark-good,
dockroot-init boots the last good image instead, at every boot, and says so.
Once you have fixed what kept the image from booting (or want to watch it fail
again), retry forgets its failed count: the next boot tries it again, with
dockroot.tries= new boots. The last good image stays recorded.

Like mark-good, it finds the root device in /run/dockroot/boot.json and mounts
the btrfs top level privately to update .dockroot/state.json.`,
		Examples: []cli.Example{
			{Command: "retry", Doc: "boot the new image again at the next boot"},
		},
		Setup: setupRetry,
	}
}

func setupRetry(fs *flag.FlagSet) func(*Context, []string) error {
	record := bootRecordArg(fs)
	return func(ctx *Context, args []string) error {
		rec, path, err := record(args)
		if err != nil {
			return err
		}
		dev, err := rootDevicePath(rec, path)
		if err != nil {
			return err
		}
		var before bootstate.Record
		err = withTopLevel(ctx, dev, func(top string) error {
			st, _ := bootstate.Load(top)
			before = st.Record
			_, err := bootstate.Retry(top)
			return err
		})
		if err != nil {
			return err
		}
		switch {
		case before.FellBack != nil:
			fmt.Fprintf(ctx.Stdout, "%s gets new tries: the next boot of it is attempt 1\n", before.FellBack)
		case before.Trying != nil:
			fmt.Fprintf(ctx.Stdout, "%s: its count of %d boots without mark-good starts again\n", before.Trying.Image, before.Trying.Attempts)
		default:
			fmt.Fprintln(ctx.Stdout, "no image was being counted; nothing changed")
		}
		return nil
	}
}
