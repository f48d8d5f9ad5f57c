// Package commands is the verb list of the host tool `dockroot`: New builds
// the cli.App with every verb in the order `dockroot help` shows them, and
// each verb's file parses its flags, calls the package that holds its logic
// (install, doctor, gc, images, toplevel, initramfs, bootmenu, bootstate,
// update, watch)
// and prints the result. cmd/dockroot calls Main; tests call it in-process
// with buffers.
//
// It must not import the boot (hook, cmd/dockroot-init's steps) or cmd/…:
// `go list -deps ./cmd/dockroot` must not list hook.
package commands

import "github.com/dockroot/dockroot/internal/cli"

// Context is what a verb may use of its process; see cli.Context.
type Context = cli.Context

// New returns the dockroot CLI; version is what `dockroot version` prints.
func New(version string) *cli.App {
	app := cli.New("dockroot", "boot a Docker image as the machine's root filesystem",
		doctorVerb(),
		gcVerb(),
		imagesVerb(),
		initramfsVerb(),
		installVerb(),
		markGoodVerb(),
		menuVerb(),
		retryVerb(),
		statusVerb(),
		toplayerVerb(),
		updateVerb(),
		versionVerb(version),
		watchVerb(),
	)
	app.Advise = advise
	return app
}

// Main runs one command line and returns the process exit code
// (0 success, 1 failure, 2 usage error).
func Main(ctx *Context, version string) int {
	return New(version).Main(ctx)
}
