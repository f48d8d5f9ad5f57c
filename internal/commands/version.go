package commands

import (
	"flag"
	"fmt"
	"runtime"

	"github.com/dockroot/dockroot/internal/cli"
)

// versionVerb prints version, which cmd/dockroot's main.version holds
// (stamped by the build: -ldflags "-X main.version=v1.2.3").
func versionVerb(version string) *cli.Verb {
	return &cli.Verb{
		Name:    "version",
		Summary: "print the dockroot version",
		Usage:   "version",
		Doc:     "The version is the one `make build` stamps into both binaries (git describe);\nthe booted system records dockroot-init's in /run/dockroot/boot.json.",
		Examples: []cli.Example{
			{Command: "version"},
		},
		Setup: func(fs *flag.FlagSet) func(*Context, []string) error {
			return func(ctx *Context, args []string) error {
				if len(args) > 0 {
					return cli.Usagef("unexpected argument %q", args[0])
				}
				_, err := fmt.Fprintf(ctx.Stdout, "dockroot %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
				return err
			}
		},
	}
}
