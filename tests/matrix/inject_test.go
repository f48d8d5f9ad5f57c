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
	"github.com/dockroot/dockroot/toplayer"
)

var errInjected = errors.New("injected failure at the end of the step")

// injector fails one step at its end: it wraps the Env function the step
// calls last, lets the real one do its work, then returns errInjected, as
// if the work had been done and the step then failed.
type injector struct {
	step string // hook.Step.Name
	via  string // the Env function wrapped
	wrap func(env *hook.Env, fail func() error)
}

var injectors = []injector{
	{"pseudo-fs", "MountPseudo", func(env *hook.Env, fail func() error) {
		real := env.MountPseudo
		env.MountPseudo = func() ([]string, error) {
			a, err := real()
			if err != nil {
				return a, err
			}
			return a, fail()
		}
	}},
	{"config", "LoadConfig", func(env *hook.Env, fail func() error) {
		real := env.LoadConfig
		env.LoadConfig = func(c string) (*config.Config, error) {
			cfg, err := real(c)
			if err != nil {
				return cfg, err
			}
			return cfg, fail()
		}
	}},
	{"modules", "LoadModules", func(env *hook.Env, fail func() error) {
		env.LoadModules = func(string) (string, error) { return "0 modules", fail() }
	}},
	{"root-device", "WaitDevice", func(env *hook.Env, fail func() error) {
		real := env.WaitDevice
		env.WaitDevice = func(spec config.DeviceSpec, what string, cfg *config.Config) (hook.Device, error) {
			d, err := real(spec, what, cfg)
			if err != nil || what != "root" {
				return d, err
			}
			return d, fail()
		}
	}},
	{"top-level", "Mount of the top level", func(env *hook.Env, fail func() error) {
		wrapMount(env, env.TopDir, fail)
	}},
	{"image", "Resolver.Resolve", func(env *hook.Env, fail func() error) {
		real := env.OpenStore
		env.OpenStore = func(kind, top, dp string) (hook.Resolver, error) {
			r, err := real(kind, top, dp)
			if err != nil {
				return r, err
			}
			return failingResolver{r, fail}, nil
		}
	}},
	{"boot-count", "BeginBoot", func(env *hook.Env, fail func() error) {
		real := env.BeginBoot
		env.BeginBoot = func(top, id, ref string, tries int) (bootstate.Decision, *bootstate.Good, error) {
			d, g, err := real(top, id, ref, tries)
			if err != nil {
				return d, g, err
			}
			return d, g, fail()
		}
	}},
	{"free-space", "FreeSpace", func(env *hook.Env, fail func() error) {
		real := env.FreeSpace
		env.FreeSpace = func(top string) (freespace.Space, error) {
			s, err := real(top)
			if err != nil {
				return s, err
			}
			return s, fail()
		}
	}},
	// The prepared layer is lost to the boot (as in a crash): it never
	// learns the path, so only the next boot can clean it up.
	{"rw-layer", "PrepareLayer", func(env *hook.Env, fail func() error) {
		real := env.PrepareLayer
		env.PrepareLayer = func(req hook.LayerRequest) (hook.PendingLayer, error) {
			p, err := real(req)
			if err != nil {
				return p, err
			}
			return nil, fail()
		}
	}},
	// The fixture's first boot kept a prepared base, which would spare
	// this boot the copy: hide it, so the top layer is applied.
	{"top-layer", "ApplyTop", func(env *hook.Env, fail func() error) {
		env.Bases = missingBases{env.Bases}
		real := env.ApplyTop
		env.ApplyTop = func(newRoot, src string) (toplayer.Summary, error) {
			s, err := real(newRoot, src)
			if err != nil {
				return s, err
			}
			return s, fail()
		}
	}},
	// The layer went live but the boot is told the commit failed: it then
	// aborts a layer that is already NAME.
	{"top-layer", "PendingLayer.Commit", func(env *hook.Env, fail func() error) {
		real := env.PrepareLayer
		env.PrepareLayer = func(req hook.LayerRequest) (hook.PendingLayer, error) {
			p, err := real(req)
			if err != nil {
				return p, err
			}
			return failingCommit{p, fail}, nil
		}
	}},
	{"new-root", "Mount of the new root", func(env *hook.Env, fail func() error) {
		wrapMount(env, env.NewRoot, fail)
	}},
	{"record", "WriteRecord", func(env *hook.Env, fail func() error) {
		real := env.WriteRecord
		env.WriteRecord = func(path string, rec *bootrecord.Record) error {
			if err := real(path, rec); err != nil {
				return err
			}
			return fail()
		}
	}},
	{"switch-root", "SwitchRoot", func(env *hook.Env, fail func() error) {
		real := env.SwitchRoot
		env.SwitchRoot = func(newRoot, init string, args []string) error {
			if err := real(newRoot, init, args); err != nil {
				return err
			}
			return fail()
		}
	}},
}

func wrapMount(env *hook.Env, target string, fail func() error) {
	real := env.Mount
	env.Mount = func(source, t, fstype string, flags uintptr, data string) error {
		if err := real(source, t, fstype, flags, data); err != nil || t != target {
			return err
		}
		return fail()
	}
}

type failingResolver struct {
	hook.Resolver
	fail func() error
}

func (r failingResolver) Resolve(ref string) (*snapshot.Image, error) {
	img, err := r.Resolver.Resolve(ref)
	if err != nil {
		return img, err
	}
	return nil, r.fail()
}

type failingCommit struct {
	hook.PendingLayer
	fail func() error
}

// missingBases is a BaseStore that never finds a base (but saves them).
type missingBases struct{ hook.BaseStore }

func (missingBases) Find(string, rwlayer.BaseKey) (string, bool) { return "", false }

func (p failingCommit) Commit() (hook.LayerResult, error) {
	if _, err := p.PendingLayer.Commit(); err != nil {
		return hook.LayerResult{}, err
	}
	return hook.LayerResult{}, p.fail()
}

// TestStepBoundaryFailures fails each step of the sequence at its end, in
// two ways (the Env function it calls last returns an error after doing
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
		// top-layer-source calls no Env function that can fail with the
		// top layer on the root device (the fingerprint and base lookup
		// only decide whether to copy); its device failures are matrix
		// cases ("top-layer device missing").
		if !covered[st.Name] && st.Name != "hibernation" && st.Name != "layer" && st.Name != "top-layer-source" {
			t.Errorf("step %s has no Env-function injector: add one to injectors (the panic injection alone covers it now)", st.Name)
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
