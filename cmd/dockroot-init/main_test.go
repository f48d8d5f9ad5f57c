package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/hook"
)

// fakeFailsafe is a Failsafe of PID 1 whose system calls are recorded.
func fakeFailsafe(console *strings.Builder, did *[]string) *hook.Failsafe {
	return &hook.Failsafe{
		Console:   console,
		PID1:      true,
		Shell:     "/bin/sh",
		HaveShell: func(string) bool { return true },
		RunShell:  func(string) error { *did = append(*did, "shell"); return errors.New("no tty in a test") },
		Reboot:    func(cmd int) error { *did = append(*did, "reboot"); return nil },
		Sync:      func() {},
		Sleep:     func(time.Duration) {},
		Wait:      func() { *did = append(*did, "wait") },
		Now:       time.Now,
		Exit:      func(int) { *did = append(*did, "exit") },
	}
}

// A failed boot: its error is printed last and its policy followed.
func TestGuardBootError(t *testing.T) {
	var console strings.Builder
	var did []string
	err := &hook.BootError{Step: "image", Desc: "resolve the image", OnFail: config.OnFailReboot, Err: errors.New("no such image")}
	guard(fakeFailsafe(&console, &did), func() error { return err }, func() config.OnFail { return config.OnFailShell })
	if strings.Join(did, " ") != "reboot" {
		t.Errorf("did %v, want reboot (the BootError's policy)", did)
	}
	if !strings.Contains(console.String(), "dockroot: BOOT FAILED: resolve the image: no such image") {
		t.Errorf("console:\n%s", console.String())
	}
}

// A panic outside the steps reaches main's recover: the stack is printed,
// then the failure last, and the policy read so far is followed.
func TestGuardPanic(t *testing.T) {
	for _, tc := range []struct {
		policy config.OnFail
		did    string
	}{
		{config.OnFailReboot, "reboot"},
		{config.OnFailShell, "shell wait"},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			var console strings.Builder
			var did []string
			guard(fakeFailsafe(&console, &did), func() error { panic("sequencing bug") }, func() config.OnFail { return tc.policy })
			if strings.Join(did, " ") != tc.did {
				t.Errorf("did %v, want %s", did, tc.did)
			}
			out := console.String()
			stack, failed := strings.Index(out, "runtime/debug.Stack"), strings.Index(out, "BOOT FAILED: internal error (panic: sequencing bug)")
			if stack < 0 || failed < stack {
				t.Errorf("want the stack, then the failure:\n%s", out)
			}
		})
	}
}

// Hook mode: a failure with onfail=shell exits 1 with one line (the
// generator's script panics into its own shell); reboot and halt are
// carried out here; a panic is a failure too.
func TestGuardHook(t *testing.T) {
	for _, tc := range []struct {
		policy config.OnFail
		panics bool
		did    string
	}{
		{config.OnFailShell, false, "exit"},
		{config.OnFailPrevious, false, "exit"},
		{config.OnFailReboot, false, "reboot exit"},
		{config.OnFailHalt, false, "reboot exit"},
		{config.OnFailShell, true, "exit"},
	} {
		var console strings.Builder
		var did []string
		fs := fakeFailsafe(&console, &did)
		fs.PID1 = false
		guardHook(fs, func() error {
			if tc.panics {
				panic("bug")
			}
			return &hook.BootError{Step: "image", Desc: "resolve the image", OnFail: tc.policy, Err: errors.New("no such\nimage")}
		}, func() config.OnFail { return tc.policy })
		if got := strings.Join(did, " "); got != tc.did {
			t.Errorf("%s panic=%v: did %q, want %q", tc.policy, tc.panics, got, tc.did)
		}
		if !strings.Contains(console.String(), "dockroot: BOOT FAILED: ") {
			t.Errorf("%s: console:\n%s", tc.policy, console.String())
		}
		if tc.did == "exit" && !tc.panics && strings.Count(console.String(), "\n") != 1 {
			t.Errorf("%s: want one line:\n%s", tc.policy, console.String())
		}
	}
	var did []string
	guardHook(fakeFailsafe(new(strings.Builder), &did), func() error { return nil }, func() config.OnFail { return config.OnFailShell })
	if len(did) != 0 {
		t.Errorf("success did %v", did)
	}
}

func TestIsHook(t *testing.T) {
	for args, want := range map[string]bool{
		"/init":                                  false,
		"/init --hook":                           true,
		"/usr/lib/dockroot/dockroot-init --hook": true,
		"/usr/lib/dockroot/dockroot-hook":        true,
		"dockroot-init --version":                false,
	} {
		if got := isHook(strings.Fields(args)); got != want {
			t.Errorf("isHook(%q) = %v", args, got)
		}
	}
}

// Hook mode's arguments: --hook alone, --rootflags-file=PATH, and anything
// else refused with the one option named.
func TestHookOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		hook bool
		file string
		ok   bool
	}{
		{[]string{"dockroot-init", "--hook"}, true, "", true},
		{[]string{"dockroot-init", "--hook", "--rootflags-file=/run/dockroot/rootflags"}, true, "/run/dockroot/rootflags", true},
		{[]string{"/usr/lib/dockroot/dockroot-hook", "--rootflags-file=/x"}, true, "/x", true},
		{[]string{"dockroot-init", "--hook", "--rootflags-file="}, true, "", false},
		{[]string{"dockroot-init", "--hook", "--rootflags-file", "/x"}, true, "", false},
		{[]string{"dockroot-init", "--hook", "--bogus"}, true, "", false},
		{[]string{"dockroot-init"}, false, "", true},
		{[]string{"dockroot-init", "--rootflags-file=/x"}, false, "", true},
	} {
		if got := isHook(tc.args); got != tc.hook {
			t.Errorf("isHook(%q) = %v, want %v", tc.args, got, tc.hook)
		}
		if !tc.hook {
			continue
		}
		env := &hook.Env{}
		err := hookOptions(env, tc.args[1:])
		if (err == nil) != tc.ok || env.RootflagsFile != tc.file {
			t.Errorf("hookOptions(%q) = %v, file %q; want ok=%v, file %q", tc.args[1:], err, env.RootflagsFile, tc.ok, tc.file)
		}
		if err != nil && !strings.Contains(err.Error(), "--rootflags-file=PATH") {
			t.Errorf("hookOptions(%q): %v does not name the option", tc.args[1:], err)
		}
	}
}
