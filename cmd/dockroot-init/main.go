// Command dockroot-init is /init in a dockroot initramfs: PID 1 from the
// moment the kernel unpacks the initramfs until it execs the image's init.
// It boots a Docker image's btrfs subvolume as the root filesystem; the
// sequence lives in package hook. This file only wires the logger, runs
// hook.Boot and decides what a failure means (dockroot.onfail=).
//
// With --hook (or run as dockroot-hook) it is a step inside the
// distribution's own initramfs instead (hook/initramfs-tools): it makes
// the fresh rw layer, records the boot, releases its mounts and exits 0,
// and that initramfs mounts root= with rootflags=subvol=NAME itself. On
// failure it prints "dockroot: BOOT FAILED: ..." and exits 1, and the
// generator's script drops to its emergency shell (dockroot.onfail=shell);
// dockroot.onfail=reboot and halt it carries out itself, as PID 1 would.
//
// Build it static (CGO_ENABLED=0) with the version stamped in:
//
//	go build -trimpath -ldflags "-s -w -X main.version=v1.2.3" ./cmd/dockroot-init
//
// It imports hook and nothing host-only: no Docker client, no cpio writer,
// no menu renderer, no cgo (tests/layering.TestImportGraph holds the list).
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/hook"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	failsafe := hook.DefaultFailsafe(os.Stdout)
	if isHook(os.Args) {
		os.Exit(hookMain(failsafe))
	}
	if !failsafe.PID1 {
		if len(os.Args) == 2 && os.Args[1] == "--version" {
			fmt.Println("dockroot-init", version)
			os.Exit(0)
		}
		// It would mount over /dev, /run and / and exec another init: run
		// by hand that takes over the machine. The hook mode for another
		// initramfs is the separate, explicit --hook.
		failsafe.Handle(errors.New("dockroot-init must run as PID 1, the initramfs's /init (or with --hook inside another initramfs); refusing to touch this system"), "")
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

// isHook says whether dockroot-init runs in hook mode: dockroot-init --hook
// [OPTIONS], or a link named dockroot-hook.
func isHook(args []string) bool {
	if len(args) == 0 {
		return false
	}
	return filepath.Base(args[0]) == "dockroot-hook" || len(args) >= 2 && args[1] == "--hook"
}

// hookOptions reads hook mode's options, the arguments after --hook:
// --rootflags-file=PATH says that the generator's script mounts the
// rootflags= value written there (hook.Env.RootflagsFile).
func hookOptions(env *hook.Env, args []string) error {
	if len(args) > 0 && args[0] == "--hook" {
		args = args[1:]
	}
	for _, a := range args {
		v, ok := strings.CutPrefix(a, "--rootflags-file=")
		if !ok || v == "" {
			return fmt.Errorf("dockroot-init --hook: unknown argument %q; the only option is --rootflags-file=PATH (fix the distribution's initramfs script that runs it)", a)
		}
		env.RootflagsFile = v
	}
	return nil
}

// hookMain runs hook mode and returns the exit status for the generator's
// script: 0 when root= is ready to mount (or there was nothing to do), 1
// when the boot failed and the script should drop to its shell.
func hookMain(failsafe *hook.Failsafe) int {
	env := hook.NewEnv(hook.NewLogger(os.Stdout), version)
	code := 1
	failsafe.Exit = func(c int) { code = c }
	// The generator's shell is its own; never wait forever inside a
	// script: the caller decides.
	failsafe.Wait = func() {}
	guardHook(failsafe, func() error {
		if err := hookOptions(env, os.Args[1:]); err != nil {
			return err
		}
		_, err := hook.Prepare(env)
		if err == nil {
			code = 0
		}
		return err
	}, env.OnFail)
	return code
}

// guardHook is guard for hook mode: the same recover and the same last
// message. dockroot.onfail=reboot and halt are carried out here, as PID 1
// would, since the generator knows no such policy; anything else (shell,
// or previous that could not fall back) exits non-zero with the one-line
// reason, and the script calls the generator's panic.
func guardHook(failsafe *hook.Failsafe, prepare func() error, policy func() config.OnFail) {
	handle := func(err error, p config.OnFail) {
		failsafe.PID1 = p == config.OnFailReboot || p == config.OnFailHalt
		failsafe.Handle(err, p)
		if failsafe.PID1 {
			// reboot(2) failed, or a test's did nothing: still fail.
			failsafe.Exit(1)
		}
	}
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(failsafe.Console, "%spanic: %v\n%s", hook.Prefix, p, debug.Stack())
			handle(fmt.Errorf("internal error (panic: %v); this is a dockroot bug, please report it", p), policy())
		}
	}()
	if err := prepare(); err != nil {
		handle(err, hook.PolicyOf(err))
	}
}
