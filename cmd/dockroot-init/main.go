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

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/hook"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	failsafe := hook.DefaultFailsafe(os.Stdout)
	if !failsafe.PID1 {
		if len(os.Args) == 2 && os.Args[1] == "--version" {
			fmt.Println("dockroot-init", version)
			os.Exit(0)
		}
		// It would mount over /dev, /run and / and exec another init: run
		// by hand that takes over the machine. The hook mode for another
		// initramfs will be a separate, explicit entry point.
		failsafe.Handle(errors.New("dockroot-init must run as PID 1, the initramfs's /init; refusing to touch this system"), "")
		os.Exit(1)
	}

	env := hook.NewEnv(hook.NewLogger(os.Stdout), version)
	env.KernelInitArgs = os.Args[1:]
	guard(failsafe, func() error { return run(env) }, env.OnFail)
	// PID 1 must not return from main: the kernel panics ("Attempted to
	// kill init!") and the cause scrolls away. Handle returns only if
	// its own wait does.
	failsafe.Wait()
	os.Exit(1)
}

// run boots. As PID 1 it returns only on failure: on success the last
// step execs the image's init.
func run(env *hook.Env) error {
	if err := hook.Boot(env); err != nil {
		return err
	}
	return errors.New("the boot sequence ended without starting the image's init")
}

// guard runs boot and hands its error to the failsafe, which prints it last
// on the console and follows dockroot.onfail=. It holds dockroot-init's
// only recover: a panic inside a step is already an error of that step
// (hook's step runner), so what arrives here is a panic in the sequencing
// itself. Its stack goes to the console first, then the failsafe's
// message, with the policy as far as the configuration was read.
func guard(failsafe *hook.Failsafe, boot func() error, policy func() config.OnFail) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(failsafe.Console, "%spanic: %v\n%s", hook.Prefix, p, debug.Stack())
			failsafe.Handle(fmt.Errorf("internal error (panic: %v); this is a dockroot bug, please report it", p), policy())
		}
	}()
	err := boot()
	failsafe.Handle(err, hook.PolicyOf(err))
}
