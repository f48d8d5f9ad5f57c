package hook

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/dockroot/dockroot/config"
	"golang.org/x/sys/unix"
)

// Action is what happens after a failed boot.
type Action int

const (
	// ActionExit: not PID 1 (run by hand, or as a hook inside another
	// initramfs): exit non-zero and let the caller decide.
	ActionExit Action = iota
	// ActionShell: start the initramfs's shell on the console.
	ActionShell
	// ActionWait: no shell to start: keep the message on screen and wait
	// for a power cycle. PID 1 must never exit (the kernel panics).
	ActionWait
	// ActionReboot: sync and restart the machine.
	ActionReboot
	// ActionPowerOff: sync and power off. dockroot.onfail=halt means this,
	// so a VM under test exits instead of hanging halted.
	ActionPowerOff
)

func (a Action) String() string {
	switch a {
	case ActionExit:
		return "exit"
	case ActionShell:
		return "shell"
	case ActionWait:
		return "wait"
	case ActionReboot:
		return "reboot"
	case ActionPowerOff:
		return "poweroff"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decide maps a dockroot.onfail= policy to an action. Outside PID 1 it is
// always ActionExit: a helper never reboots a machine it does not own.
// "previous" reaches here only when Boot could not boot the previous layer
// either (or failed outside the steps it covers), so it falls back to the
// shell, as does an unknown or empty policy.
func Decide(policy config.OnFail, pid1, haveShell bool) Action {
	if !pid1 {
		return ActionExit
	}
	switch policy {
	case config.OnFailReboot:
		return ActionReboot
	case config.OnFailHalt:
		return ActionPowerOff
	}
	if haveShell {
		return ActionShell
	}
	return ActionWait
}

// maxQuickShellExits is how many times in a row the shell may exit within
// two seconds before Failsafe stops restarting it and just waits.
const maxQuickShellExits = 3

// Failsafe carries out the onfail policy. Its fields are the system calls
// it needs, so the policy table can be tested; DefaultFailsafe fills them.
type Failsafe struct {
	Console io.Writer // where the final message goes (after all logs)
	PID1    bool
	Shell   string        // "/bin/sh"
	Delay   time.Duration // pause before reboot/poweroff, to read the message

	HaveShell func(path string) bool
	RunShell  func(path string) error // nil when the shell ran and exited
	Reboot    func(cmd int) error     // reboot(2) with LINUX_REBOOT_CMD_*
	Sync      func()
	Sleep     func(time.Duration)
	Wait      func() // never returns in production
	Now       func() time.Time
	Exit      func(code int)
}

// DefaultFailsafe returns a Failsafe using the real system calls, printing
// to console.
func DefaultFailsafe(console io.Writer) *Failsafe {
	return &Failsafe{
		Console:   console,
		PID1:      os.Getpid() == 1,
		Shell:     "/bin/sh",
		Delay:     5 * time.Second,
		HaveShell: isExecutable,
		RunShell:  runConsoleShell,
		Reboot:    unix.Reboot,
		Sync:      unix.Sync,
		Sleep:     time.Sleep,
		Wait:      waitForever,
		Now:       time.Now,
		Exit:      os.Exit,
	}
}

// Handle reports err as the last thing on the console and then applies
// policy. As PID 1 it does not return (unless the injected Wait does).
func (f *Failsafe) Handle(err error, policy config.OnFail) {
	action := Decide(policy, f.PID1, f.HaveShell(f.Shell))
	if action == ActionExit {
		fmt.Fprintf(f.Console, "%sBOOT FAILED: %s\n", Prefix, oneLine(err.Error()))
		f.Exit(1)
		return
	}

	fmt.Fprintln(f.Console)
	for _, r := range Records("BOOT FAILED: "+err.Error(), 1<<16) {
		fmt.Fprintf(f.Console, "%s%s\n", Prefix, r)
	}
	switch action {
	case ActionShell:
		fmt.Fprintf(f.Console, "%sdockroot.onfail=%s: starting %s; fix the problem named above (or the kernel command line), then run `reboot -f`\n", Prefix, policyName(policy), f.Shell)
		for quick := 0; quick < maxQuickShellExits; {
			start := f.Now()
			if serr := f.RunShell(f.Shell); serr != nil {
				fmt.Fprintf(f.Console, "%scannot start %s: %v\n", Prefix, f.Shell, serr)
				break
			}
			// A shell that exits at once (no terminal, EOF on stdin) would
			// otherwise be restarted in a tight loop.
			if f.Now().Sub(start) < 2*time.Second {
				quick++
			} else {
				quick = 0
			}
			fmt.Fprintf(f.Console, "%sthe shell exited; PID 1 must not exit, so it starts again (`reboot -f` restarts the machine)\n", Prefix)
		}
		f.waitMessage()
	case ActionWait:
		fmt.Fprintf(f.Console, "%sdockroot.onfail=%s but this initramfs has no shell (build it with `dockroot initramfs --shell` for one)\n", Prefix, policyName(policy))
		f.waitMessage()
	case ActionReboot, ActionPowerOff:
		cmd, verb := unix.LINUX_REBOOT_CMD_RESTART, "rebooting"
		if action == ActionPowerOff {
			cmd, verb = unix.LINUX_REBOOT_CMD_POWER_OFF, "powering off"
		}
		fmt.Fprintf(f.Console, "%sdockroot.onfail=%s: %s in %s\n", Prefix, policyName(policy), verb, f.Delay)
		f.Sleep(f.Delay)
		f.Sync()
		if rerr := f.Reboot(cmd); rerr != nil {
			fmt.Fprintf(f.Console, "%s%s failed: %v\n", Prefix, verb, rerr)
			f.waitMessage()
		}
	}
}

func (f *Failsafe) waitMessage() {
	fmt.Fprintf(f.Console, "%swaiting: fix the kernel command line in the boot loader and power-cycle the machine\n", Prefix)
	f.Wait()
}

func policyName(p config.OnFail) string {
	if p == "" {
		return "shell"
	}
	return string(p)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// runConsoleShell runs the shell as a child of PID 1 in its own session with
// the console as controlling terminal (so job control and ^C work). Running
// it as a child rather than exec'ing it keeps PID 1 alive when the shell
// exits: the kernel panics when init exits.
func runConsoleShell(path string) error {
	cmd := exec.Command(path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(InitEnv(os.Environ()), "PS1=(dockroot) # ")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		// Without a controlling terminal (stdin not a tty) try plainly.
		cmd = exec.Command(path)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(InitEnv(os.Environ()), "PS1=(dockroot) # ")
		if err := cmd.Start(); err != nil {
			return err
		}
	}
	cmd.Wait() // its exit status is the user's business
	return nil
}

// waitForever keeps PID 1 alive, reaping orphans the kernel reparents to it.
func waitForever() {
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, 0, nil); err != nil {
			time.Sleep(time.Minute)
		}
	}
}
