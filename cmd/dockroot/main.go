// Command dockroot is the host tool of dockroot: it builds the initramfs that
// boots a Docker image as the machine's root, installs kernels, writes boot
// menus and reports on the booted system.
//
// The verbs are listed in internal/commands; main only hands them the
// process: its streams, arguments, environment and a context cancelled by
// SIGINT or SIGTERM.
//
// It imports only internal/commands and internal/cli: the verbs and their
// logic live there, where tests drive them in-process.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/commands"
)

// version is stamped by the build: -ldflags "-X main.version=v1.2.3"
// (dockroot-init uses the same variable name).
var version = "dev"

func main() {
	// The first SIGINT or SIGTERM cancels ctx, so a verb stops between
	// steps and cleans up (install's staging directory, gc between
	// deletions); after it the signals are the default again, so a second
	// one ends the process even in a step that does not watch ctx.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := commands.Main(&cli.Context{
		Ctx:    ctx,
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Args:   os.Args[1:],
		Env:    os.Environ(),
	}, version)
	stop()
	os.Exit(code)
}
