package matrix

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/hook"
	"github.com/dockroot/dockroot/internal/bootrecord"
)

// consoleLog is a hook.Logger that keeps what a console would show: one
// "dockroot: " line per record.
type consoleLog struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	debug bool
}

// SetDebug is how the boot passes on dockroot.debug.
func (l *consoleLog) SetDebug(on bool) {
	l.mu.Lock()
	l.debug = on
	l.mu.Unlock()
}

func (l *consoleLog) add(level, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(fmt.Sprintf(format, args...), "\n") {
		fmt.Fprintf(&l.buf, "%s%s%s\n", hook.Prefix, level, line)
	}
}

func (l *consoleLog) Printf(format string, args ...any)  { l.add("", format, args...) }
func (l *consoleLog) Noticef(format string, args ...any) { l.add("", format, args...) }
func (l *consoleLog) Warnf(format string, args ...any)   { l.add("", format, args...) }
func (l *consoleLog) Errorf(format string, args ...any)  { l.add("", format, args...) }
func (l *consoleLog) Debugf(format string, args ...any) {
	l.mu.Lock()
	on := l.debug
	l.mu.Unlock()
	if on {
		l.add("debug: ", format, args...)
	}
}
func (l *consoleLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}
func (l *consoleLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// SwitchCall is what the boot handed to switch_root.
type SwitchCall struct {
	NewRoot, Init string
	Args          []string
	InitErr       error // hook.ResolveInit in the new root
}

// Result is one in-process boot.
type Result struct {
	Err     error
	Console string // the log, and the BOOT FAILED line main would print last
	Switch  *SwitchCall
	Record  *bootrecord.Record // boot.json, when written
	Env     *hook.Env
}

// Policy is the dockroot.onfail= policy that applies to a failed boot.
func (r *Result) Policy() config.OnFail { return hook.PolicyOf(r.Err) }

// Action is what dockroot-init as PID 1 with a shell would do after it.
func (r *Result) Action() hook.Action { return hook.Decide(r.Policy(), true, true) }

// Step is the step a failed boot stopped at.
func (r *Result) Step() string {
	var be *hook.BootError
	if errors.As(r.Err, &be) {
		return be.Step
	}
	return ""
}

// release unmounts what the boot left mounted (a real boot hands the new
// root to the image's init; in-process it stays mounted for the checks).
func (r *Result) release() {
	for _, dir := range []string{r.Env.NewRoot, r.Env.ToplayerDir, r.Env.TopDir} {
		unmountBelow(dir)
	}
}

// bootDisk runs the real boot sequence (hook.NewEnv) in-process against
// d: real config parsing, device scan, mounts, image store, snapshots, top
// layer and boot.json. Replaced are only what would take over the test
// machine or needs a kernel of its own: mounting the pseudo filesystems,
// loading modules, and switch_root, which records its call and checks that
// init resolves in the new root (inProcess). wrap, when set, changes the
// Env further (the failure-injection tests wrap its interfaces). A panic
// that leaves hook.Boot is recovered and reported as dockroot-init's main
// does. The caller must call Result.release.
func bootDisk(d *Disk, cmdline, dir string, wrap func(*hook.Env)) *Result {
	log := &consoleLog{}
	env := hook.NewEnv(log, "matrix")
	env.RunDir = filepath.Join(dir, "run/dockroot")
	env.TopDir = filepath.Join(dir, "run/dockroot/top")
	env.ToplayerDir = filepath.Join(dir, "run/dockroot/toplayer")
	env.NewRoot = filepath.Join(dir, "newroot")
	env.ModulesList = filepath.Join(dir, "modules.list")
	r := &Result{Env: env}
	env.System = inProcess{System: env.System, cmdline: cmdline, switched: func(c *SwitchCall) { r.Switch = c }}
	if wrap != nil {
		wrap(env)
	}
	policy := env.OnFail
	r.Err = boot(env)
	if r.Err != nil {
		var be *hook.BootError
		if errors.As(r.Err, &be) {
			policy = func() config.OnFail { return be.OnFail }
		}
		// What dockroot-init prints last, as its main does.
		fs := &hook.Failsafe{Console: log, HaveShell: func(string) bool { return true }, Exit: func(int) {}}
		fs.Handle(r.Err, policy())
	}
	r.Console = log.String()
	if data, err := os.ReadFile(filepath.Join(env.RunDir, "boot.json")); err == nil {
		var rec bootrecord.Record
		if json.Unmarshal(data, &rec) == nil {
			r.Record = &rec
		}
	}
	return r
}

// boot is hook.Boot with dockroot-init's recover around it: a panic
// outside the steps becomes the error main would report.
func boot(env *hook.Env) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error (panic: %v); this is a dockroot bug, please report it", p)
		}
	}()
	return hook.Boot(env)
}

// inProcess is the real hook.System minus what would take over the test
// machine: the pseudo filesystems are left alone, the command line comes
// from the case, no modules are loaded, and switch_root only records its
// call.
type inProcess struct {
	hook.System
	cmdline  string
	switched func(*SwitchCall)
}

func (inProcess) MountPseudo() ([]string, error)               { return nil, nil }
func (s inProcess) ReadCmdline() (string, error)               { return s.cmdline, nil }
func (inProcess) LoadConfig(c string) (*config.Config, error)  { return config.Load(c, nil) }
func (inProcess) LoadModules(string, []string) (string, error) { return "", os.ErrNotExist }
func (s inProcess) SwitchRoot(newRoot, init string, args []string) error {
	_, ierr := hook.ResolveInit(newRoot, init)
	s.switched(&SwitchCall{NewRoot: newRoot, Init: init, Args: args, InitErr: ierr})
	return nil
}
