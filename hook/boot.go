package hook

import (
	"errors"
	"path/filepath"
	"slices"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/internal/machineid"
	"github.com/dockroot/dockroot/internal/resume"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/snapshot/stores"
	"github.com/dockroot/dockroot/toplayer"
)

// Env is everything Boot touches outside its own logic: paths, and the
// machine and the other packages behind a few small interfaces. NewEnv
// fills it for a real boot (env.go); tests fill it with fakes and
// temporary directories.
type Env struct {
	Log     Logger
	Version string // dockroot version, for boot.json and the first log line

	// Paths. RunDir must be on the /run mount so boot.json moves into the
	// new root; NewRoot must not be under /run (moving /run into a mount
	// below it would be a loop, which the kernel refuses).
	RunDir      string // /run/dockroot: boot.json
	TopDir      string // /run/dockroot/top: the btrfs top level (subvolid=5)
	ToplayerDir string // /run/dockroot/toplayer: a top-layer device of its own
	NewRoot     string // /newroot
	ModulesList string // /etc/dockroot/modules.list, written by the initramfs builder

	// RootflagsFile is hook mode's answer to a generator that can mount
	// another subvolume than rootflags= names (initramfs-tools: its boot
	// script rewrites ROOTFLAGS): when set, the release step writes there
	// the rootflags= value to mount, and an existing layer other than
	// subvol=NAME (dockroot.layer=previous, dockroot.onfail=previous)
	// can boot. When empty, the generator mounts rootflags= as given, and
	// such a layer is a HookLayerError.
	RootflagsFile string

	// KernelInitArgs is PID 1's own argv after argv[0]: what the kernel
	// would pass to the real init (arguments after "--" and bare unknown
	// parameters such as "single"). When nil, Config.InitArgs is used.
	KernelInitArgs []string

	System  System
	Devices Devices
	Images  Images
	Layers  Layers
	// Bases keeps prepared bases (image + top layer) between boots; nil
	// keeps none, as dockroot.cache=0 does.
	Bases Bases
	// Hibernation is the hibernation guard (resume.Prober); nil skips it.
	Hibernation HibernationGuard
	// BootCount counts boots for dockroot.tries=; nil skips it.
	BootCount BootCounter
	// Machine is where the machine's identity is read, for the
	// placeholders of toplayer_path= (%u, %s, %m); nil reads none.
	Machine *machineid.Sources

	// AfterStep, when set, runs after each step that did not fail (done or
	// skipped), with the step's name. An error fails the boot at that
	// step, as if the step itself had failed after doing its work; a panic
	// is a crash of the sequence outside any step. It is a test seam
	// (tests/matrix injects a failure at every step boundary); a real boot
	// leaves it nil.
	AfterStep func(step string) error

	// onFail is the dockroot.onfail= policy once the configuration has
	// been read (see OnFail).
	onFail config.OnFail
}

// System is the machine outside the btrfs filesystem: the kernel's system
// calls and the initramfs's own files.
type System interface {
	// MountPseudo mounts /dev, /proc, /sys and /run, and says which were
	// mounted already.
	MountPseudo() (already []string, err error)
	ReadCmdline() (string, error) // /proc/cmdline
	// LoadConfig returns a Config filled in as far as possible even with
	// an error, so dockroot.onfail= still applies (config.Load does).
	LoadConfig(cmdline string) (*config.Config, error)
	// LoadModules loads the modules of the list (all of them, or by the
	// module table beside it: the ones the devices need, and the
	// filesystems, fsTypes included), and says what it did. A missing
	// list is ("", os.ErrNotExist).
	LoadModules(list string, fsTypes []string) (summary string, err error)
	Mount(source, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
	WriteRecord(path string, rec *bootrecord.Record) error
	// SwitchRoot execs init in newRoot; it returns only on failure.
	SwitchRoot(newRoot, init string, args []string) error
	Now() time.Time
}

// Devices finds block devices.
type Devices interface {
	// Wait waits for a device as the config says (rootwait, rootdelay=,
	// dockroot.timeout=); what is "root" or "toplayer".
	Wait(spec config.DeviceSpec, what string, cfg *config.Config) (Device, error)
}

// Device is a block device found for root= or toplayer=.
type Device struct {
	Path   string // /dev/vda2
	FSType string // from the superblock; "" when unknown
}

// Images opens the image store (stores.OpenPaths): kind as
// dockroot.store= names it, the stores' roots relative to top.
type Images interface {
	Open(kind, top string, paths stores.Paths) (snapshot.Store, error)
}

// Layers is the rw layers on the mounted btrfs top level (rwlayer.Layers):
// l names them (Top, Name, Keep, DockerPath, Image).
type Layers interface {
	// List lists NAME and NAME.prev.N, current first.
	List(l *rwlayer.Layers) ([]rwlayer.LayerInfo, error)
	// Prepare snapshots from (relative to l.Top) under a temporary name.
	Prepare(l *rwlayer.Layers, from string) (Pending, error)
	// ApplyTop copies the top layer at src into the layer at root
	// (toplayer.Apply).
	ApplyTop(root, src string) (toplayer.Summary, error)
	SubvolID(path string) (uint64, error)
	// FreeSpace returns the space of the filesystem mounted at top, and
	// an error matching freespace.ErrLowSpace when a new layer must not be
	// made there.
	FreeSpace(top string) (freespace.Space, error)
}

// Pending is an rw layer snapshotted from the image under a temporary
// name (*rwlayer.Pending). Commit puts it in place under NAME and rotates
// the previous ones; Abort deletes it and touches nothing else.
type Pending interface {
	Path() string // where it can be written now (for the top layer)
	// MetadataOnly says no file data was written into the layer, only
	// btrfs metadata (reflinks included), so Commit needs no data flush.
	MetadataOnly()
	Commit() (*rwlayer.CreateResult, error)
	Abort() error
}

// Bases finds and saves prepared bases: read-only snapshots of a fresh
// layer with the top layer applied, which a later boot with the same image
// and the same top layer snapshots instead of copying the top layer again
// (rwlayer.Bases, toplayer.TakeFingerprint).
type Bases interface {
	// Key is the key of the base for booting img as layer with the top
	// layer at src (described by desc). An error means no base can be
	// used or kept for it (for example, a top layer on a filesystem
	// without change times); the boot copies the top layer in full.
	Key(top, layer string, img *snapshot.Image, src, desc string) (rwlayer.BaseKey, error)
	// Find returns the base for k, relative to top, if a complete one exists.
	Find(top string, k rwlayer.BaseKey) (string, bool)
	// Save snapshots the layer at from (absolute) read-only as the base
	// for k and deletes the bases it replaces.
	Save(top, from string, k rwlayer.BaseKey) (rel string, deleted []string, err error)
}

// HibernationGuard decides whether a hibernation image forbids recreating
// the rw layer, and asks the kernel to resume it (resume.Prober).
type HibernationGuard interface {
	Check(resume string, offset int64, noresume bool) resume.Verdict
	Resume(dev string, offset int64) error
}

// BootCounter counts the boots of an image in the boot-state file on the
// top level (bootstate.State.BeginBoot).
type BootCounter interface {
	// BeginBoot says whether to fall back to the last good image, and
	// returns the last good image too, for boot.json. Its error is a
	// warning: the decision is still usable.
	BeginBoot(top, imageID, ref string, tries int) (bootstate.Decision, *bootstate.Good, error)
}

// State is what the steps of one boot learn and pass on.
type State struct {
	Env     *Env
	Cmdline string
	Config  *config.Config

	RootDev     Device
	TopMounted  bool
	Image       *snapshot.Image
	Pending     Pending // nil before "create the rw layer" and after "commit"
	Layer       rwlayer.CreateResult
	Committed   bool
	Toplayer    *bootrecord.Toplayer
	ToplayerDev string   // mount point of a separate top-layer device, "" if none
	Init        string   // init path inside the new root
	InitArgs    []string // its arguments
	// InitChecked: Init was found in the fresh layer before it was
	// committed (see applyTopLayer).
	InitChecked bool
	// TopReadOnly: the top level is mounted read-only because the device
	// refused a read-write mount (see mountTop).
	TopReadOnly bool

	// Existing, when set, is the layer this boot mounts as it was left
	// instead of a fresh one (dockroot.layer=, the hibernation guard or
	// dockroot.onfail=previous); the steps that make a fresh layer are
	// skipped.
	Existing *ExistingLayer
	// bootrecord.Fallback is set when dockroot.onfail=previous chose Existing.
	Fallback *bootrecord.Fallback
	// Hibernation is set when the hibernation guard keeps the layer.
	Hibernation *bootrecord.Hibernation
	// BootCount is what boot counting decided (dockroot.tries=).
	BootCount *bootrecord.BootCount

	// base is this boot's prepared base: the key, and whether the layer
	// was made from it (nil: no base, see findBase).
	base *baseUse
	// tops is the top layer's device and directories, once
	// toplayerSource found (and mounted) them.
	tops *topLayers
	// machine is the machine's identity, once read (see identity).
	machine *machineid.Identity
	// copied is how many bytes the top layer wrote as data (not reflinks).
	copied int64

	store  snapshot.Store // the image store, once opened
	note   string
	runner *runner
}

// BootError is a failed boot: the step, its error, and the onfail policy
// that applies (from the configuration, as far as it could be read).
type BootError struct {
	Step   string        // Step.Name, e.g. "image"
	Desc   string        // Step.Desc, e.g. "resolve the image"
	OnFail config.OnFail // never empty
	Err    error
}

func (e *BootError) Error() string { return e.Desc + ": " + e.Err.Error() }
func (e *BootError) Unwrap() error { return e.Err }

// PolicyOf returns the dockroot.onfail= policy that applies to an error
// from Boot: the configured one, or shell when the configuration could not
// tell.
func PolicyOf(err error) config.OnFail {
	var be *BootError
	if errors.As(err, &be) && be.OnFail != "" {
		return be.OnFail
	}
	return config.OnFailShell
}

// OnFail returns the dockroot.onfail= policy as far as Boot has read the
// configuration: shell before it has. main uses it for a failure that is
// not a *BootError (a panic outside the steps).
func (e *Env) OnFail() config.OnFail {
	if e.onFail != "" {
		return e.onFail
	}
	return config.OnFailShell
}

// Steps returns the boot sequence of dockroot-init as /init. Read it as
// the checklist it is: the groups in order, each a list of named steps.
//
// The sequence is data so that another plan is another selection of the
// same steps: PreparePlan, hook mode inside the distribution's initramfs,
// runs deviceSteps and layerSteps and then recordStep, releases the top
// level and stops, leaving the mount of root= to that initramfs.
func Steps() []Step {
	return slices.Concat(deviceSteps(), layerSteps(), handoverSteps())
}

// Boot runs the boot sequence. As PID 1 it returns only on failure (the
// last step execs the image's init), with a *BootError saying which step
// failed and which dockroot.onfail= policy applies. The caller (main)
// decides what the error means, and recovers a panic outside the steps
// (the step runner recovers those inside them).
//
// With dockroot.layer=previous or current, or when the hibernation guard
// keeps the layer, the steps that make a fresh layer (Step.Fresh) are
// skipped and an existing layer boots as it was left. With
// dockroot.onfail=previous, a failure in one of those steps boots the
// layer the last boot used instead (see fallBack).
func Boot(env *Env) error {
	return run(env, Steps())
}

// run runs steps in order on a fresh State.
func run(env *Env, steps []Step) error { return runPlan(env, steps, nil) }

// runPlan runs steps in order on a fresh State and, when done is set, calls
// it last whatever happened (Prepare releases its mounts with it).
func runPlan(env *Env, steps []Step, done func(*State)) error {
	s := &State{Env: env}
	if done != nil {
		defer done(s)
	}
	s.runner = &runner{log: env.Log, now: env.System.Now, total: len(steps)}
	env.Log.Noticef("dockroot %s starting", env.Version)
	// Also on a panic outside the steps, on its way to main: the layer
	// this boot prepared but did not commit is removed.
	defer s.abortPending()

	for i, st := range steps {
		n := i + 1
		var serr error
		if s.Existing != nil && st.Fresh {
			s.runner.skip(n, st, "booting "+s.Existing.Name+" as it was left ("+s.Existing.Why+")")
		} else {
			serr = s.runner.run(n, st, s)
		}
		if serr == nil && env.AfterStep != nil {
			if serr = env.AfterStep(st.Name); serr != nil {
				env.Log.Errorf("[%d/%d] %s: failed after the step: %v", n, len(steps), st.Desc, serr)
			}
		}
		if serr == nil || st.Optional {
			continue
		}
		s.abortPending()
		serr = advise(serr)
		if st.Fresh && s.Existing == nil && s.policy() == config.OnFailPrevious {
			if ferr := s.fallBack(st, serr); ferr == nil {
				continue
			} else {
				env.Log.Errorf("dockroot.onfail=previous: cannot fall back: %v", ferr)
			}
		}
		return &BootError{Step: st.Name, Desc: st.Desc, OnFail: s.policy(), Err: serr}
	}
	return nil
}

// policy is the onfail policy as far as the configuration was read.
func (s *State) policy() config.OnFail {
	if s.Config != nil && s.Config.OnFail != "" {
		return s.Config.OnFail
	}
	return config.OnFailShell
}

// abortPending deletes the layer this boot prepared but did not commit. The
// layer that booted last time is untouched. A failure here is logged, not
// returned: it must not hide the error that caused the abort.
func (s *State) abortPending() {
	if s.Pending == nil || s.Committed {
		return
	}
	p := s.Pending
	s.Pending = nil
	if err := p.Abort(); err != nil {
		s.Env.Log.Errorf("removing the unfinished rw layer %s: %v (the next boot cleans it up)", p.Path(), err)
	} else {
		s.Env.Log.Printf("removed the unfinished rw layer %s; the previous layers are untouched", p.Path())
	}
}

func (s *State) recordPath() string { return filepath.Join(s.Env.RunDir, "boot.json") }
