package hook

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/config"
	"golang.org/x/sys/unix"
)

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		policy    config.OnFail
		pid1      bool
		haveShell bool
		want      Action
	}{
		{config.OnFailShell, true, true, ActionShell},
		{config.OnFailShell, true, false, ActionWait},
		{config.OnFailReboot, true, true, ActionReboot},
		{config.OnFailReboot, true, false, ActionReboot},
		{config.OnFailHalt, true, true, ActionPowerOff},
		{config.OnFailHalt, true, false, ActionPowerOff},
		// previous reaches main only when the fallback failed too.
		{config.OnFailPrevious, true, true, ActionShell},
		{config.OnFailPrevious, true, false, ActionWait},
		{"", true, true, ActionShell},
		{"bogus", true, false, ActionWait},
		// Not PID 1: never reboot someone else's machine.
		{config.OnFailShell, false, true, ActionExit},
		{config.OnFailReboot, false, true, ActionExit},
		{config.OnFailHalt, false, false, ActionExit},
		{config.OnFailPrevious, false, true, ActionExit},
	} {
		if got := Decide(tc.policy, tc.pid1, tc.haveShell); got != tc.want {
			t.Errorf("Decide(%q, pid1=%v, shell=%v) = %v, want %v", tc.policy, tc.pid1, tc.haveShell, got, tc.want)
		}
	}
}

// fakeFailsafe records what Handle did, in order.
type fakeFailsafe struct {
	Failsafe
	console bytes.Buffer
	calls   []string
}

func newFakeFailsafe(pid1, haveShell bool, rebootErr error, shellRuns int) *fakeFailsafe {
	f := &fakeFailsafe{}
	clock := time.Unix(0, 0)
	f.Failsafe = Failsafe{
		Console:   &f.console,
		PID1:      pid1,
		Shell:     "/bin/sh",
		Delay:     5 * time.Second,
		HaveShell: func(string) bool { return haveShell },
		RunShell: func(p string) error {
			f.calls = append(f.calls, "shell "+p)
			if shellRuns == 0 {
				return errors.New("exec: no such file")
			}
			shellRuns--
			return nil
		},
		Reboot: func(cmd int) error { f.calls = append(f.calls, fmt.Sprintf("reboot %#x", cmd)); return rebootErr },
		Sync:   func() { f.calls = append(f.calls, "sync") },
		Sleep:  func(d time.Duration) { f.calls = append(f.calls, "sleep "+d.String()) },
		Wait:   func() { f.calls = append(f.calls, "wait") },
		Exit:   func(code int) { f.calls = append(f.calls, fmt.Sprintf("exit %d", code)) },
		Now:    func() time.Time { clock = clock.Add(time.Hour); return clock },
	}
	return f
}

func TestFailsafeHandle(t *testing.T) {
	cause := errors.New("resolve the image: image \"web:2\" not found; tagged images: web:1")
	for _, tc := range []struct {
		name      string
		policy    config.OnFail
		pid1      bool
		haveShell bool
		rebootErr error
		shellRuns int
		calls     string
		says      string
	}{
		{"shell", config.OnFailShell, true, true, nil, 2, "shell /bin/sh|shell /bin/sh|shell /bin/sh|wait", "starting /bin/sh"},
		{"no shell", config.OnFailShell, true, false, nil, 0, "wait", "has no shell"},
		{"reboot", config.OnFailReboot, true, true, nil, 0, fmt.Sprintf("sleep 5s|sync|reboot %#x", unix.LINUX_REBOOT_CMD_RESTART), "rebooting in 5s"},
		{"halt powers off", config.OnFailHalt, true, false, nil, 0, fmt.Sprintf("sleep 5s|sync|reboot %#x", unix.LINUX_REBOOT_CMD_POWER_OFF), "powering off in 5s"},
		{"reboot fails", config.OnFailReboot, true, false, errors.New("EPERM"), 0, fmt.Sprintf("sleep 5s|sync|reboot %#x|wait", unix.LINUX_REBOOT_CMD_RESTART), "rebooting failed"},
		{"not pid 1", config.OnFailReboot, false, true, nil, 0, "exit 1", "BOOT FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeFailsafe(tc.pid1, tc.haveShell, tc.rebootErr, tc.shellRuns)
			f.Handle(cause, tc.policy)
			if got := strings.Join(f.calls, "|"); got != tc.calls {
				t.Errorf("calls = %s, want %s", got, tc.calls)
			}
			out := f.console.String()
			if !strings.Contains(out, "dockroot: BOOT FAILED: resolve the image: image \"web:2\" not found; tagged images: web:1") {
				t.Errorf("console does not show the cause:\n%s", out)
			}
			if !strings.Contains(out, tc.says) {
				t.Errorf("console does not say %q:\n%s", tc.says, out)
			}
			if !tc.pid1 && strings.Count(out, "\n") != 1 {
				t.Errorf("outside PID 1 the reason must be one line, got:\n%s", out)
			}
			if tc.pid1 && !strings.HasPrefix(out, "\n") {
				t.Errorf("the failure should be set off by a blank line:\n%q", out)
			}
		})
	}
}

func TestFailsafeStopsRestartingAQuickShell(t *testing.T) {
	f := newFakeFailsafe(true, true, nil, 100)
	f.Now = func() time.Time { return time.Unix(0, 0) } // every run takes no time
	f.Handle(errors.New("x"), config.OnFailShell)
	if n := strings.Count(strings.Join(f.calls, "|"), "shell"); n != maxQuickShellExits {
		t.Errorf("shell ran %d times, want %d before giving up: %v", n, maxQuickShellExits, f.calls)
	}
	if f.calls[len(f.calls)-1] != "wait" {
		t.Errorf("did not wait after the shell: %v", f.calls)
	}
}

func TestPolicyOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want config.OnFail
	}{
		{errors.New("plain"), config.OnFailShell},
		{&BootError{OnFail: config.OnFailReboot, Err: errors.New("x")}, config.OnFailReboot},
		{fmt.Errorf("wrapped: %w", &BootError{OnFail: config.OnFailHalt, Err: errors.New("x")}), config.OnFailHalt},
		{&BootError{Err: errors.New("x")}, config.OnFailShell},
	} {
		if got := PolicyOf(tc.err); got != tc.want {
			t.Errorf("PolicyOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
