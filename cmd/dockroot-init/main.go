// Command dockroot-init is /init in a dockroot initramfs: PID 1 from the
// moment the kernel unpacks the initramfs until it execs the image's init.
// It boots a Docker image's btrfs subvolume as the root filesystem; the
// sequence lives in package hook. This file only wires the logger, runs
// hook.Boot and decides what a failure means (dockroot.onfail=).
//
// Build it static (CGO_ENABLED=0) with the version stamped in:
//
//	go build -trimpath -ldflags "-s -w -X main.version=v1.2.3" ./cmd/dockroot-init
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/dockroot/dockroot/hook"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	pid1 := os.Getpid() == 1
	failsafe := hook.DefaultFailsafe(os.Stdout)
	// Whatever happens below, PID 1 must not return from main: the kernel
	// panics ("Attempted to kill init!") and the cause scrolls away.
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(os.Stdout, "\ndockroot: BOOT FAILED: internal error: panic: %v\n%s", p, debug.Stack())
		}
		if pid1 {
			failsafe.Wait()
		}
		os.Exit(1)
	}()

	if !pid1 {
		if len(os.Args) == 2 && os.Args[1] == "--version" {
			fmt.Println("dockroot-init", version)
			os.Exit(0)
		}
		// It would mount over /dev, /run and / and exec another init: run
		// by hand that takes over the machine. The hook mode for another
		// initramfs will be a separate, explicit entry point.
		failsafe.Handle(errors.New("dockroot-init must run as PID 1, the initramfs's /init; refusing to touch this system"), "")
		return
	}

	log := hook.NewLogger(os.Stdout)
	env := hook.NewEnv(log, version)
	env.KernelInitArgs = os.Args[1:]
	err := boot(env)
	if err == nil {
		err = errors.New("the boot sequence ended without starting the image's init")
	}
	failsafe.Handle(err, hook.PolicyOf(err))
}

// boot runs hook.Boot, turning a panic that escapes it into an error.
func boot(env *hook.Env) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error (panic: %v); this is a dockroot bug, please report it\n%s", p, debug.Stack())
		}
	}()
	return hook.Boot(env)
}
