package matrix

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/hook"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/snapshot/stores"
	"github.com/dockroot/dockroot/toplayer"
)

var errInjected = errors.New("injected failure at the end of the step")

// injector fails one step at its end: it wraps the Env interface method the
// step calls last, lets the real one do its work, then returns errInjected,
// as if the work had been done and the step then failed.
type injector struct {
	step string // hook.Step.Name
	via  string // the method wrapped
	wrap func(env *hook.Env, fail func() error)
}

func failSystem(op string) func(env *hook.Env, fail func() error) {
	return func(env *hook.Env, fail func() error) {
		env.System = failingSystem{System: env.System, op: op, fail: fail}
	}
}

func failMount(target func(env *hook.Env) string) func(env *hook.Env, fail func() error) {
	return func(env *hook.Env, fail func() error) {
		env.System = failingSystem{System: env.System, op: "Mount", target: target(env), fail: fail}
	}
}

func failLayers(op string) func(env *hook.Env, fail func() error) {
	return func(env *hook.Env, fail func() error) {
		env.Layers = failingLayers{Layers: env.Layers, op: op, fail: fail}
	}
}

var injectors = []injector{
	{"pseudo-fs", "System.MountPseudo", failSystem("MountPseudo")},
	{"config", "System.LoadConfig", failSystem("LoadConfig")},
	{"modules", "System.LoadModules", failSystem("LoadModules")},
	{"root-device", "Devices.Wait", func(env *hook.Env, fail func() error) {
		env.Devices = failingDevices{env.Devices, fail}
	}},
	{"top-level", "System.Mount of the top level", failMount(func(env *hook.Env) string { return env.TopDir })},
	{"image", "snapshot.Store.Resolve", func(env *hook.Env, fail func() error) {
		env.Images = failingImages{env.Images, fail}
	}},
	{"boot-count", "BootCounter.BeginBoot", func(env *hook.Env, fail func() error) {
		env.BootCount = failingCount{env.BootCount, fail}
	}},
	{"free-space", "Layers.FreeSpace", failLayers("FreeSpace")},
	// The prepared layer is lost to the boot (as in a crash): it never
	// learns the path, so only the next boot can clean it up.
	{"rw-layer", "Layers.Prepare", failLayers("Prepare")},
	// The fixture's first boot kept a prepared base, which would spare
	// this boot the copy: hide it, so the top layer is applied.
	{"top-layer", "Layers.ApplyTop", func(env *hook.Env, fail func() error) {
		env.Bases = missingBases{env.Bases}
		failLayers("ApplyTop")(env, fail)
	}},
	// The layer went live but the boot is told the commit failed: it then
	// aborts a layer that is already NAME.
	{"commit", "Pending.Commit", failLayers("Commit")},
	{"new-root", "System.Mount of the new root", failMount(func(env *hook.Env) string { return env.NewRoot })},
	{"record", "System.WriteRecord", failSystem("WriteRecord")},
	{"switch-root", "System.SwitchRoot", failSystem("SwitchRoot")},
}

// failingSystem is a System whose method op fails after doing its work
// (Mount: only the mount on target).
type failingSystem struct {
	hook.System
	op, target string
	fail       func() error
}

func (s failingSystem) MountPseudo() ([]string, error) {
	a, err := s.System.MountPseudo()
	if err != nil || s.op != "MountPseudo" {
		return a, err
	}
	return a, s.fail()
}

func (s failingSystem) LoadConfig(c string) (*config.Config, error) {
	cfg, err := s.System.LoadConfig(c)
	if err != nil || s.op != "LoadConfig" {
		return cfg, err
	}
	return cfg, s.fail()
}

func (s failingSystem) LoadModules(list string, fsTypes []string) (string, error) {
	if s.op != "LoadModules" {
		return s.System.LoadModules(list, fsTypes)
	}
	return "0 modules", s.fail()
}

func (s failingSystem) Mount(source, target, fstype string, flags uintptr, data string) error {
	if err := s.System.Mount(source, target, fstype, flags, data); err != nil || s.op != "Mount" || target != s.target {
		return err
	}
	return s.fail()
}

func (s failingSystem) WriteRecord(path string, rec *bootrecord.Record) error {
	if err := s.System.WriteRecord(path, rec); err != nil || s.op != "WriteRecord" {
		return err
	}
	return s.fail()
}

func (s failingSystem) SwitchRoot(newRoot, init string, args []string) error {
	if err := s.System.SwitchRoot(newRoot, init, args); err != nil || s.op != "SwitchRoot" {
		return err
	}
	return s.fail()
}

type failingDevices struct {
	hook.Devices
	fail func() error
}

func (d failingDevices) Wait(spec config.DeviceSpec, what string, cfg *config.Config) (hook.Device, error) {
	dev, err := d.Devices.Wait(spec, what, cfg)
	if err != nil || what != "root" {
		return dev, err
	}
	return dev, d.fail()
}

type failingImages struct {
	hook.Images
	fail func() error
}

func (i failingImages) Open(kind, top string, paths stores.Paths) (snapshot.Store, error) {
	st, err := i.Images.Open(kind, top, paths)
	if err != nil {
		return st, err
	}
	return failingResolver{st, i.fail}, nil
}

type failingResolver struct {
	snapshot.Store
	fail func() error
}

func (r failingResolver) Resolve(ref string) (*snapshot.Image, error) {
	img, err := r.Store.Resolve(ref)
	if err != nil {
		return img, err
	}
	return nil, r.fail()
}

type failingCount struct {
	hook.BootCounter
	fail func() error
}

func (c failingCount) BeginBoot(top, id, ref string, tries int) (bootstate.Decision, *bootstate.Good, error) {
	d, g, err := c.BootCounter.BeginBoot(top, id, ref, tries)
	if err != nil {
		return d, g, err
	}
	return d, g, c.fail()
}

// failingLayers is a Layers whose method op fails after doing its work
// (Commit: the commit of the layer Prepare returns).
type failingLayers struct {
	hook.Layers
	op   string
	fail func() error
}

func (l failingLayers) FreeSpace(top string) (freespace.Space, error) {
	sp, err := l.Layers.FreeSpace(top)
	if err != nil || l.op != "FreeSpace" {
		return sp, err
	}
	return sp, l.fail()
}

func (l failingLayers) Prepare(rl *rwlayer.Layers, from string) (hook.Pending, error) {
	p, err := l.Layers.Prepare(rl, from)
	switch {
	case err != nil:
		return p, err
	case l.op == "Prepare":
		return nil, l.fail()
	case l.op == "Commit":
		return failingCommit{p, l.fail}, nil
	}
	return p, nil
}

func (l failingLayers) ApplyTop(root, src string) (toplayer.Summary, error) {
	s, err := l.Layers.ApplyTop(root, src)
	if err != nil || l.op != "ApplyTop" {
		return s, err
	}
	return s, l.fail()
}

type failingCommit struct {
	hook.Pending
	fail func() error
}

func (p failingCommit) Commit() (*rwlayer.CreateResult, error) {
	if _, err := p.Pending.Commit(); err != nil {
		return nil, err
	}
	return nil, p.fail()
}

// missingBases is a Bases that never finds a base (but saves them).
type missingBases struct{ hook.Bases }

func (missingBases) Find(string, rwlayer.BaseKey) (string, bool) { return "", false }

// TestStepBoundaryFailures fails each step of the sequence at its end, in
// two ways (the Env method it calls last returns an error after doing
// its work; a panic at the step boundary, through hook.Env.AfterStep, as a
// crash of the boot right after the step would be), and then boots the
// same disk normally: that boot must reach switch_root with a fresh layer
// of the right image under NAME, leave exactly keep+1 layers, no temporary
// one, and state files that parse.
func TestStepBoundaryFailures(t *testing.T) {
	f := pristine(t)
	covered := map[string]bool{}
	for _, inj := range injectors {
		t.Run(inj.step+"/"+inj.via, func(t *testing.T) {
			covered[inj.step] = true
			fired := false
			fail := func() error { fired = true; return errInjected }
			d := newDisk(t, f)
			r := bootDisk(d, f.expand(baseCmdline, d.Root), t.TempDir(), func(env *hook.Env) { inj.wrap(env, fail) })
			r.release()
			if !fired {
				t.Fatalf("the injection into %s never fired\n%s", inj.via, r.Console)
			}
			optional := stepOptional(inj.step)
			switch {
			case optional && r.Err != nil:
				t.Errorf("a failure of the optional step %s failed the boot: %v", inj.step, r.Err)
			case !optional && (r.Err == nil || r.Step() != inj.step || !errors.Is(r.Err, errInjected)):
				t.Errorf("boot = %v (step %q); want the injected failure at %s", r.Err, r.Step(), inj.step)
			}
			nextBoot(t, d)
		})
	}
	for _, st := range hook.Steps() {
		t.Run(st.Name+"/panic after the step", func(t *testing.T) {
			d := newDisk(t, f)
			fired := false
			r := bootDisk(d, f.expand(baseCmdline, d.Root), t.TempDir(), func(env *hook.Env) {
				env.AfterStep = func(step string) error {
					if step == st.Name && !fired {
						fired = true
						panic(errInjected)
					}
					return nil
				}
			})
			r.release()
			if !fired {
				t.Fatalf("step %s never finished\n%s", st.Name, r.Console)
			}
			if r.Err == nil || !strings.Contains(r.Err.Error(), "panic") {
				t.Errorf("boot = %v; want the panic after %s reported as a failure", r.Err, st.Name)
			}
			nextBoot(t, d)
		})
	}
	for _, st := range hook.Steps() {
		// top-layer-source calls no Env method that can fail with the
		// top layer on the root device (the fingerprint and base lookup
		// only decide whether to copy); its device failures are matrix
		// cases ("top-layer device missing").
		if !covered[st.Name] && st.Name != "hibernation" && st.Name != "layer" && st.Name != "top-layer-source" {
			t.Errorf("step %s has no Env-method injector: add one to injectors (the panic injection alone covers it now)", st.Name)
		}
	}
}

func stepOptional(name string) bool {
	for _, st := range hook.Steps() {
		if st.Name == name {
			return st.Optional
		}
	}
	return false
}

// nextBoot boots d normally after an injected failure and checks what it
// left: the image's fresh layer under NAME, keep+1 layers, nothing leaked,
// readable state files.
func nextBoot(t *testing.T, d *Disk) {
	t.Helper()
	r := bootDisk(d, d.F.expand(baseCmdline, d.Root), t.TempDir(), nil)
	defer r.release()
	if r.Err != nil || r.Switch == nil {
		t.Fatalf("the next boot: %v (switch_root reached: %v)\n%s", r.Err, r.Switch != nil, r.Console)
	}
	if r.Switch.InitErr != nil {
		t.Errorf("the next boot's init: %v", r.Switch.InitErr)
	}
	id, err := btrfs.SubvolID(r.Switch.NewRoot)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(r.Switch.NewRoot, "etc/fixture-image")); strings.TrimSpace(string(got)) != "desk:1" {
		t.Errorf("the next boot's root holds image %q; want desk:1", got)
	}
	r.release()
	checkLayers(t, d, id)
}

// checkLayers checks that the disk holds exactly NAME (subvolume id) and
// NAME.prev.1 outside the Docker store, and that the layer and boot state
// files parse.
func checkLayers(t *testing.T, d *Disk, id uint64) {
	t.Helper()
	subs, err := d.subvolumes()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range layerSubvolumes(subs) {
		names = append(names, s.Path)
		if s.Path == layerName && s.ID != id {
			t.Errorf("%s is subvolume %d; the boot mounted %d", layerName, s.ID, id)
		}
	}
	if want := []string{layerName, layerName + ".prev.1"}; fmt.Sprint(sorted(names)) != fmt.Sprint(want) {
		t.Errorf("layers after the next boot: %v; want exactly %v (keep=1)", names, want)
	}
	l := &rwlayer.Layers{Top: d.Top, Name: layerName, DockerPath: dockerPath}
	infos, err := l.List()
	if err != nil {
		t.Errorf("layer state: %v", err)
	}
	for _, li := range infos {
		if !li.Owned {
			t.Errorf("layer %s is not recorded as dockroot's", li.Name)
		}
	}
	if _, err := bootstate.Load(d.Top); err != nil {
		t.Errorf("boot state: %v", err)
	}
}
