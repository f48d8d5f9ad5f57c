package hook

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/snapshot/stores"
	"github.com/dockroot/dockroot/toplayer"
)

// memLog is a Logger that keeps every record with its level.
type memLog struct {
	mu    sync.Mutex
	lines []string // "LEVEL message"
}

func (l *memLog) add(level, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, level+" "+fmt.Sprintf(format, args...))
}

func (l *memLog) Printf(format string, args ...any)  { l.add("INFO", format, args...) }
func (l *memLog) Noticef(format string, args ...any) { l.add("NOTICE", format, args...) }
func (l *memLog) Warnf(format string, args ...any)   { l.add("WARN", format, args...) }
func (l *memLog) Errorf(format string, args ...any)  { l.add("ERR", format, args...) }
func (l *memLog) Debugf(format string, args ...any)  { l.add("DEBUG", format, args...) }

func (l *memLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// find returns the first line containing every part, or "".
func (l *memLog) find(parts ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		return line
	}
	return ""
}

// envFuncs implements Env's System, Devices, Images, Layers and
// BootCounter with function fields, so a test replaces one call at a
// time (a nil field panics: the test did not expect that call).
type envFuncs struct {
	mountPseudo func() ([]string, error)
	readCmdline func() (string, error)
	loadConfig  func(cmdline string) (*config.Config, error)
	loadModules func(list string) (string, error)
	mount       func(source, target, fstype string, flags uintptr, data string) error
	unmount     func(target string, flags int) error
	writeRecord func(path string, rec *bootrecord.Record) error
	switchRoot  func(newRoot, init string, args []string) error
	now         func() time.Time

	waitDevice func(spec config.DeviceSpec, what string, cfg *config.Config) (Device, error)
	openStore  func(kind, top string, paths stores.Paths) (snapshot.Store, error)

	listLayers   func(l *rwlayer.Layers) ([]rwlayer.LayerInfo, error)
	prepareLayer func(l *rwlayer.Layers, from string) (Pending, error)
	applyTop     func(root, src string) (toplayer.Summary, error)
	subvolID     func(path string) (uint64, error)
	freeSpace    func(top string) (freespace.Space, error)

	beginBoot func(top, imageID, ref string, tries int) (bootstate.Decision, *bootstate.Good, error)
}

// install makes f the System, Devices, Images, Layers and BootCount of env.
func (f *envFuncs) install(env *Env) {
	env.System, env.Devices, env.Images, env.Layers, env.BootCount = f, f, f, f, f
}

func (f *envFuncs) MountPseudo() ([]string, error)                      { return f.mountPseudo() }
func (f *envFuncs) ReadCmdline() (string, error)                        { return f.readCmdline() }
func (f *envFuncs) LoadConfig(c string) (*config.Config, error)         { return f.loadConfig(c) }
func (f *envFuncs) LoadModules(list string, _ []string) (string, error) { return f.loadModules(list) }
func (f *envFuncs) Unmount(target string, flags int) error              { return f.unmount(target, flags) }
func (f *envFuncs) WriteRecord(p string, r *bootrecord.Record) error    { return f.writeRecord(p, r) }
func (f *envFuncs) Now() time.Time                                      { return f.now() }
func (f *envFuncs) Mount(source, target, fstype string, flags uintptr, data string) error {
	return f.mount(source, target, fstype, flags, data)
}
func (f *envFuncs) SwitchRoot(newRoot, init string, args []string) error {
	return f.switchRoot(newRoot, init, args)
}
func (f *envFuncs) Wait(spec config.DeviceSpec, what string, cfg *config.Config) (Device, error) {
	return f.waitDevice(spec, what, cfg)
}
func (f *envFuncs) Open(kind, top string, paths stores.Paths) (snapshot.Store, error) {
	return f.openStore(kind, top, paths)
}
func (f *envFuncs) List(l *rwlayer.Layers) ([]rwlayer.LayerInfo, error) { return f.listLayers(l) }
func (f *envFuncs) Prepare(l *rwlayer.Layers, from string) (Pending, error) {
	return f.prepareLayer(l, from)
}
func (f *envFuncs) ApplyTop(root, src string) (toplayer.Summary, error) { return f.applyTop(root, src) }
func (f *envFuncs) SubvolID(path string) (uint64, error)                { return f.subvolID(path) }
func (f *envFuncs) FreeSpace(top string) (freespace.Space, error)       { return f.freeSpace(top) }
func (f *envFuncs) BeginBoot(top, imageID, ref string, tries int) (bootstate.Decision, *bootstate.Good, error) {
	return f.beginBoot(top, imageID, ref, tries)
}

// storeFunc is an image store that resolves with a function.
type storeFunc func(string) (*snapshot.Image, error)

func (f storeFunc) Name() string                                { return "fake" }
func (f storeFunc) Resolve(ref string) (*snapshot.Image, error) { return f(ref) }
func (f storeFunc) List() ([]snapshot.Image, error)             { return nil, nil }
