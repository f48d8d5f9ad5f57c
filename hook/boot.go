package hook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/toplayer"
	"golang.org/x/sys/unix"
)

// Env is everything Boot touches outside its own logic: paths, and the
// other packages and system calls as function fields. NewEnv fills it for a
// real boot; tests fill it with fakes and temporary directories.
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

	// KernelInitArgs is PID 1's own argv after argv[0]: what the kernel
	// would pass to the real init (arguments after "--" and bare unknown
	// parameters such as "single"). When nil, Config.InitArgs is used.
	KernelInitArgs []string

	MountPseudo func() (already []string, err error)
	ReadCmdline func() (string, error)
	// LoadConfig returns a Config filled in as far as possible even with an
	// error, so dockroot.onfail= still applies (config.Load does).
	LoadConfig func(cmdline string) (*config.Config, error)
	// LoadModules loads the modules the list names, in order, and says
	// what it did. A missing list is (nil, "", os.ErrNotExist).
	LoadModules func(list string) (summary string, err error)
	// WaitDevice waits for a device as the config says (rootwait,
	// rootdelay=, dockroot.timeout=); what is "root" or "toplayer".
	WaitDevice func(spec config.DeviceSpec, what string, cfg *config.Config) (Device, error)
	Mount      func(source, target, fstype string, flags uintptr, data string) error
	Unmount    func(target string, flags int) error
	OpenStore  func(kind, top, dockerPath string) (Resolver, error)
	// ListLayers lists the rw layers NAME and NAME.prev.N under the top
	// level, current first (rwlayer.Layers.List).
	ListLayers func(top, name, dockerPath string) ([]rwlayer.LayerInfo, error)
	// Hibernation is the hibernation guard (resume.Prober); nil skips it.
	Hibernation HibernationGuard
	// BeginBoot counts a boot of an image in the boot-state file on the
	// top level and says whether to fall back to the last good image
	// (bootstate.State.BeginBoot). It returns the last good image too, for
	// boot.json. Its error is a warning: the decision is still usable.
	BeginBoot func(top, imageID, ref string, tries int) (bootstate.Decision, *bootstate.Good, error)
	// FreeSpace returns the space of the filesystem mounted at top, and
	// an error matching freespace.ErrLowSpace when a new layer must not be
	// made there.
	FreeSpace    func(top string) (freespace.Space, error)
	PrepareLayer func(req LayerRequest) (PendingLayer, error)
	ApplyTop     func(newRoot, src string) (toplayer.Summary, error)
	// Bases keeps prepared bases (image + top layer) between boots; nil
	// keeps none, as dockroot.cache=0 does.
	Bases       BaseStore
	SubvolID    func(path string) (uint64, error)
	WriteRecord func(path string, rec *bootrecord.Record) error
	// SwitchRoot execs init in newRoot; it returns only on failure.
	SwitchRoot func(newRoot, init string, args []string) error
	Now        func() time.Time

	// AfterStep, when set, runs after each step that did not fail (done or
	// skipped), with the step's name. An error fails the boot at that
	// step, as if the step itself had failed after doing its work. It is
	// a test seam (tests/matrix injects a failure at every step boundary);
	// a real boot leaves it nil.
	AfterStep func(step string) error
}

// Device is a block device found for root= or toplayer=.
type Device struct {
	Path   string // /dev/vda2
	FSType string // from the superblock; "" when unknown
}

// Resolver finds an image in the image store (snapshot.Store does).
type Resolver interface {
	Resolve(ref string) (*snapshot.Image, error)
}

// LayerRequest asks for a new rw layer NAME snapshotted from an image.
type LayerRequest struct {
	Top         string // the mounted btrfs top level
	Name        string // rootflags subvol=, relative to Top
	Keep        int    // previous layers to keep
	DockerPath  string // relative to Top; never touched
	ImageSubvol string // relative to Top
	ImageID     string // recorded with the layer
}

// PendingLayer is an rw layer snapshotted from the image under a temporary
// name. Commit puts it in place under NAME and rotates the previous ones;
// Abort deletes it and touches nothing else.
type PendingLayer interface {
	Path() string // where it can be written now (for the top layer)
	// MetadataOnly says no file data was written into the layer, only
	// btrfs metadata (reflinks included), so Commit needs no data flush
	// (rwlayer.Pending.MetadataOnly).
	MetadataOnly()
	Commit() (LayerResult, error)
	Abort() error
}

// BaseStore finds and saves prepared bases: read-only snapshots of a
// fresh layer with the top layer applied, which a later boot with the same
// image and the same top layer snapshots instead of copying the top layer
// again (rwlayer.Bases, toplayer.TakeFingerprint).
type BaseStore interface {
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

// LayerResult is what Commit did.
type LayerResult struct {
	Path     string // the layer under its final name
	SubvolID uint64
	Rotated  []string // "FROM -> TO", relative to the top level
	Deleted  []string
	Warnings []string // rotation steps that failed after the layer went live
}

// State is what the steps of one boot learn and pass on.
type State struct {
	Env     *Env
	Cmdline string
	Config  *config.Config

	RootDev     Device
	TopMounted  bool
	Image       *snapshot.Image
	Pending     PendingLayer // nil before "create the rw layer" and after commit
	Layer       LayerResult
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
	// topSrc and topDesc are the top layer's directory and device, once
	// toplayerSource found (and mounted) them.
	topSrc, topDesc string

	store   Resolver // the image store, once opened
	note    string
	runner  *runner
	current string // the step being run, for BootError
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

// Steps returns the boot sequence. Read it as the checklist it is.
//
// The hibernation check comes before the btrfs top level is mounted: a
// hibernated kernel must be resumed before anything mounts a filesystem it
// had mounted (Documentation/power/swsusp.rst), and a read-write btrfs
// mount already writes (it replays the log tree).
func Steps() []Step {
	return []Step{
		{Name: "pseudo-fs", Desc: "mount the pseudo filesystems", Run: mountPseudo,
			Detail: func(*State) string { return "/dev /proc /sys /run" }},
		{Name: "config", Desc: "read the configuration", Run: readConfig,
			Detail: func(*State) string {
				return "/proc/cmdline, " + config.DefaultFiles.DockrootJSON + ", " + config.DefaultFiles.DockerBtrfsJSON
			}},
		{Name: "modules", Desc: "load kernel modules", Optional: true, Run: loadModules,
			Detail: func(s *State) string { return s.Env.ModulesList }},
		{Name: "root-device", Desc: "wait for the root device", Run: waitRoot,
			Detail: func(s *State) string { return s.Config.Root }},
		{Name: "hibernation", Desc: "check for a hibernation image", Run: checkHibernation,
			Detail: hibernationDetail},
		{Name: "top-level", Desc: "mount the btrfs top level", Run: mountTop,
			Detail: func(s *State) string { return s.RootDev.Path + " on " + s.Env.TopDir + ", subvolid=5" }},
		{Name: "layer", Desc: "choose the rw layer", Run: chooseLayer,
			Detail: layerDetail},
		{Name: "image", Desc: "resolve the image", Fresh: true, Run: resolveImage,
			Detail: func(s *State) string { return s.Config.Image }},
		{Name: "boot-count", Desc: "count the boot", Fresh: true, Optional: true, Run: countBoot,
			Detail: func(s *State) string { return fmt.Sprintf("dockroot.tries=%d", s.Config.Tries) }},
		{Name: "free-space", Desc: "check the free space", Fresh: true, Run: checkFreeSpace,
			Detail: func(s *State) string { return s.Env.TopDir }},
		{Name: "top-layer-source", Desc: "find the top layer", Fresh: true, Run: findTopLayer,
			Detail: toplayerDetail},
		{Name: "rw-layer", Desc: "create the rw layer", Fresh: true, Run: createLayer,
			Detail: func(s *State) string { return s.Image.Subvolume + " -> " + s.Config.Subvol }},
		{Name: "top-layer", Desc: "apply the top layer", Fresh: true, Run: applyTopLayer,
			Detail: toplayerDetail},
		{Name: "new-root", Desc: "mount the new root", Run: mountNewRoot,
			Detail: newRootDetail},
		{Name: "record", Desc: "record the boot", Run: recordBoot,
			Detail: func(s *State) string { return s.recordPath() }},
		{Name: "switch-root", Desc: "switch to the new root", Run: switchRoot,
			Detail: func(s *State) string { return strings.Join(append([]string{s.Init}, s.InitArgs...), " ") }},
	}
}

// Boot runs the boot sequence. As PID 1 it returns only on failure (the
// last step execs the image's init), with a *BootError saying which step
// failed and which dockroot.onfail= policy applies. The caller (main)
// decides what the error means.
//
// With dockroot.layer=previous or current, or when the hibernation guard
// keeps the layer, the steps that make a fresh layer (Step.Fresh) are
// skipped and an existing layer boots as it was left. With
// dockroot.onfail=previous, a failure in one of those steps boots the
// layer the last boot used instead (see fallBack).
func Boot(env *Env) (err error) {
	s := &State{Env: env}
	steps := Steps()
	s.runner = &runner{log: env.Log, now: env.now, total: len(steps)}
	env.Log.Noticef("dockroot %s starting", env.Version)

	defer func() {
		// The step runner recovers panics inside steps; this catches one in
		// the sequencing itself.
		if p := recover(); p != nil {
			s.abortPending()
			err = &BootError{Step: s.current, Desc: "boot", OnFail: s.policy(),
				Err: fmt.Errorf("internal error (panic: %v); this is a dockroot bug, please report it", p)}
		}
	}()

	for i, st := range steps {
		n := i + 1
		s.current = st.Name
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
		serr = explainNoSpace(serr)
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

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
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

// --- the steps, in order ---

func mountPseudo(s *State) error {
	already, err := s.Env.MountPseudo()
	if len(already) > 0 {
		s.Notef("already mounted: %s", strings.Join(already, " "))
	}
	return err
}

func readConfig(s *State) error {
	cmdline, err := s.Env.ReadCmdline()
	if err != nil {
		return fmt.Errorf("read the kernel command line: %w", err)
	}
	s.Cmdline = strings.TrimSpace(cmdline)
	s.Env.Log.Printf("cmdline: %s", s.Cmdline)
	cfg, err := s.Env.LoadConfig(s.Cmdline)
	if cfg != nil {
		s.Config = cfg
		if d, ok := s.Env.Log.(debugSetter); ok {
			d.SetDebug(cfg.Debug)
		}
		for _, w := range cfg.Warnings {
			s.Env.Log.Warnf("warning: %s", w)
		}
	}
	if err != nil {
		return fmt.Errorf("the boot configuration is invalid (fix the kernel command line in the boot loader):\n%w", err)
	}
	if cfg == nil {
		return errors.New("the boot configuration loader returned nothing")
	}
	s.Init, s.InitArgs = cfg.Init, cfg.InitArgs
	if s.Env.KernelInitArgs != nil {
		s.InitArgs = s.Env.KernelInitArgs
	}
	if cfg.Layer != config.LayerNew {
		s.Notef("root=%s subvol=%s layer=%s onfail=%s", cfg.Root, cfg.Subvol, cfg.Layer, cfg.OnFail)
	} else {
		from := ""
		if src := cfg.Sources["docker_image"]; src != "" && src != config.SourceCmdline {
			from = " (from " + src + ")"
		}
		s.Notef("root=%s subvol=%s image=%s%s onfail=%s", cfg.Root, cfg.Subvol, cfg.Image, from, cfg.OnFail)
	}
	for k, v := range cfg.Sources {
		s.Env.Log.Debugf("config: %s from %s", k, v)
	}
	return nil
}

func loadModules(s *State) error {
	summary, err := s.Env.LoadModules(s.Env.ModulesList)
	if errors.Is(err, os.ErrNotExist) {
		return Skip("%s does not exist (the kernel has the drivers built in, or the initramfs builder listed none)", s.Env.ModulesList)
	}
	s.Notef("%s", summary)
	return err
}

func waitRoot(s *State) error {
	d, err := s.Env.WaitDevice(s.Config.RootDevice, "root", s.Config)
	if err != nil {
		return err
	}
	if d.FSType != "" && d.FSType != "btrfs" {
		return fmt.Errorf("root device %s (%s) holds %s, not btrfs: dockroot boots from the btrfs filesystem that holds Docker's data root; check root=", d.Path, s.Config.Root, d.FSType)
	}
	s.RootDev = d
	s.Notef("%s", d.Path)
	return nil
}

func mountTop(s *State) error {
	c := s.Config
	flags, data := MountOptions(c.RootFlags)
	// The top level is where layers are created: always read-write. Other
	// rootflags (compress=, device=, degraded, ...) go along because btrfs
	// applies filesystem-wide options at the first mount.
	flags &^= unix.MS_RDONLY
	data = joinOpts("subvolid=5", data)
	if err := os.MkdirAll(s.Env.TopDir, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", s.Env.TopDir, err)
	}
	err := s.Env.Mount(s.RootDev.Path, s.Env.TopDir, c.RootFSType, flags, data)
	if err == nil {
		s.TopMounted = true
		return nil
	}
	err = fmt.Errorf("mount %s on %s (%s, %s): %w", s.RootDev.Path, s.Env.TopDir, c.RootFSType, data, err)
	if !isReadOnlyError(err) {
		return err
	}
	// dockroot.layer=current|previous with ro writes nothing to the
	// filesystem (no snapshot, no rotation, no boot count; boot.json goes
	// to /run), so a read-only top level serves, as mount(8) falls back to
	// read-only on a write-protected device.
	if c.Layer == config.LayerNew || !c.ReadOnly {
		return fmt.Errorf("%w: %s", err, readOnlyHelp(s.RootDev.Path, c))
	}
	if rerr := s.Env.Mount(s.RootDev.Path, s.Env.TopDir, c.RootFSType, flags|unix.MS_RDONLY, data); rerr != nil {
		return fmt.Errorf("%w; read-only as well: %w; the filesystem cannot be mounted at all: see dmesg for why, and check it from a rescue system with btrfs check --readonly %s",
			err, rerr, s.RootDev.Path)
	}
	s.TopMounted, s.TopReadOnly = true, true
	s.Env.Log.Warnf("%v: the device is read-only, so the top level is mounted read-only: dockroot.layer=%s with ro writes nothing to it", err, c.Layer)
	s.Notef("read-only: the device refused a read-write mount")
	return nil
}

// isReadOnlyError says whether a read-write mount failed because the
// device or filesystem is read-only: the block layer refuses to open a
// read-only device for writing with EACCES (blkdev_get_by_dev checks
// bdev_read_only), and btrfs refuses a read-write mount of a filesystem it
// will only open read-only with EROFS.
func isReadOnlyError(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EROFS)
}

// readOnlyHelp explains a read-only root device and what to do about it.
func readOnlyHelp(dev string, c *config.Config) string {
	fix := "to boot the existing rw layer as it was left without writing anything, add \"dockroot.layer=current ro\" to the kernel command line"
	if c.Layer != config.LayerNew && !c.ReadOnly {
		fix = fmt.Sprintf("dockroot.layer=%s boots the existing layer without writing only when it is mounted read-only too: add \"ro\" to the kernel command line", c.Layer)
	}
	return fmt.Sprintf("the device is read-only, so dockroot cannot make a fresh rw layer on it. Either it is write-protected "+
		"(a switch on the medium, a read-only virtual or loop disk: blockdev --getro %s prints 1; blockdev --setrw %s clears a software flag), "+
		"or btrfs forced it read-only after an error (dmesg shows \"BTRFS error\" or \"forced readonly\"; check it from a rescue system with "+
		"btrfs check --readonly %s before writing to it). %s", dev, dev, dev, fix)
}

func resolveImage(s *State) error {
	store, err := s.Env.OpenStore(s.Config.Store, s.Env.TopDir, s.Config.DockerPath)
	if err != nil {
		return err
	}
	s.store = store
	img, err := store.Resolve(s.Config.Image)
	if err != nil {
		return err
	}
	s.Image = img
	s.Notef("%s = %s, subvolume %s", img.Ref, shortID(img.ID), img.Subvolume)
	return nil
}

// findTopLayer finds the top layer (mounting its device when it is not
// the root one) and, with prepared bases on, the base this boot can make
// its layer from.
func findTopLayer(s *State) error {
	c := s.Config
	if c.ToplayerPath == "" {
		s.Notef("none (toplayer_path= is empty)")
		return nil
	}
	src, desc, err := s.toplayerSource()
	if err != nil {
		return err
	}
	s.findBase(src, desc)
	switch b := s.base; {
	case !c.Cache:
		s.Notef("%s on %s (prepared bases off: dockroot.cache=0)", c.ToplayerPath, desc)
	case s.Env.Bases == nil:
		s.Notef("%s on %s", c.ToplayerPath, desc)
	case b == nil:
		s.Notef("%s on %s (no prepared base can be kept for it)", c.ToplayerPath, desc)
	case b.reused:
		s.Notef("%s on %s, unchanged: prepared base %s", c.ToplayerPath, desc, b.rel)
	default:
		s.Notef("%s on %s: no prepared base for this image and top layer yet", c.ToplayerPath, desc)
	}
	return nil
}

func createLayer(s *State) error {
	c := s.Config
	source := s.Image.Subvolume
	if s.base != nil && s.base.reused {
		source = s.base.rel
	}
	p, err := s.Env.PrepareLayer(LayerRequest{Top: s.Env.TopDir, Name: c.Subvol, Keep: c.Keep,
		DockerPath: c.DockerPath, ImageSubvol: source, ImageID: s.Image.ID})
	if err != nil {
		return err
	}
	s.Pending = p
	if s.base != nil && s.base.reused {
		s.Notef("prepared %s from the prepared base %s", p.Path(), s.base.rel)
	} else {
		s.Notef("prepared %s", p.Path())
	}
	return nil
}

// baseUse is what findBase decided.
type baseUse struct {
	key    rwlayer.BaseKey
	rel    string // the base, relative to the top level, when reused
	reused bool
}

// findBase looks for the prepared base of this image and the top layer
// at src (desc: its device). It sets s.base when bases are on
// (dockroot.cache=, the default): reused when one matches. A top layer
// that cannot be fingerprinted is logged and copied in full.
func (s *State) findBase(src, desc string) {
	c := s.Config
	if s.Env.Bases == nil || !c.Cache {
		return
	}
	k, err := s.Env.Bases.Key(s.Env.TopDir, c.Subvol, s.Image, src, desc+":"+c.ToplayerPath)
	if err != nil {
		s.Env.Log.Printf("top layer: no prepared base, it is copied in full: %v", err)
		return
	}
	s.base = &baseUse{key: k}
	if rel, ok := s.Env.Bases.Find(s.Env.TopDir, k); ok {
		s.base.rel, s.base.reused = rel, true
	}
}

func toplayerDetail(s *State) string {
	if s.Config.ToplayerPath == "" {
		return "none: toplayer_path= is empty"
	}
	return s.Config.Toplayer + ":" + s.Config.ToplayerPath
}

// applyTopLayer copies the top layer into the prepared layer and then
// commits it. Commit is last on purpose: until it succeeds the layer the
// last boot used stays NAME, and a failure aborts only the new one. A
// layer made from a prepared base already holds the top layer; otherwise,
// with bases on, the layer is saved as the next boot's base just before
// the commit, while nothing but the image and the top layer is in it.
func applyTopLayer(s *State) error {
	copied := int64(0)
	if s.Config.ToplayerPath != "" {
		src, dev, err := s.toplayerSource()
		if err != nil {
			return err
		}
		s.Toplayer = &bootrecord.Toplayer{Device: dev, Path: s.Config.ToplayerPath}
		if b := s.base; b != nil && b.reused {
			s.Toplayer.Base, s.Toplayer.Reused = b.rel, true
		} else {
			sum, err := s.Env.ApplyTop(s.Pending.Path(), src)
			if err != nil {
				return err
			}
			s.Toplayer.Summary = sum
			copied = sum.Copied
			for _, sk := range sum.Skipped {
				s.Env.Log.Warnf("top layer: skipped %s", sk)
			}
		}
	}
	// A layer that cannot boot must not replace the one that did: find its
	// init now, in the layer exactly as it will be mounted (the top layer
	// is in it), and only then commit, which rotates and, with
	// dockroot.keep=0, deletes the previous layer.
	init, err := s.chooseInit(s.Pending.Path())
	if err != nil {
		return fmt.Errorf("the new rw layer has no init to boot, so it was not committed and %s is still the layer the last boot used: %w", s.Config.Subvol, err)
	}
	s.Init, s.InitChecked = init, true
	if b := s.base; b != nil && !b.reused {
		// A cache: failing to keep one costs the next boot a copy, no more.
		rel, _, err := s.Env.Bases.Save(s.Env.TopDir, s.Pending.Path(), b.key)
		switch {
		case rel == "":
			s.Env.Log.Warnf("top layer: could not keep a prepared base for the next boot (it will copy the top layer again): %v", err)
		case err != nil:
			s.Env.Log.Warnf("top layer: kept the prepared base %s, but an older one could not be deleted (dockroot gc deletes it): %v", rel, err)
		}
		s.Toplayer.Base = rel
	}
	if copied == 0 {
		// No top layer, or everything it wrote was reflinked from the
		// same btrfs (the default toplayer=), or it came with the base: no
		// data to write back first.
		s.Pending.MetadataOnly()
	}
	res, err := s.Pending.Commit()
	if err != nil {
		return fmt.Errorf("commit the rw layer %s: %w", s.Config.Subvol, err)
	}
	s.Layer, s.Committed, s.Pending = res, true, nil
	for _, w := range res.Warnings {
		s.Env.Log.Warnf("rw layer: %s", w)
	}
	switch t := s.Toplayer; {
	case t == nil:
		s.Notef("no top layer (toplayer_path= is empty); committed %s", s.Config.Subvol)
	case t.Reused:
		s.Notef("unchanged since the prepared base was made, nothing copied; committed %s", s.Config.Subvol)
	default:
		s.Notef("%s; committed %s", t.Summary, s.Config.Subvol)
	}
	return nil
}

// toplayerSource returns the top layer's directory and a description of
// its device, mounting that device read-only when it is not the root one.
func (s *State) toplayerSource() (src, dev string, err error) {
	if s.topSrc != "" {
		return s.topSrc, s.topDesc, nil
	}
	src, dev, err = s.findToplayer()
	if err == nil {
		s.topSrc, s.topDesc = src, dev
	}
	return src, dev, err
}

func (s *State) findToplayer() (src, dev string, err error) {
	c := s.Config
	rootDesc := s.RootDev.Path + " (" + c.Root + ")"
	if c.Toplayer == "" || c.Toplayer == c.Root {
		return filepath.Join(s.Env.TopDir, c.ToplayerPath), rootDesc, nil
	}
	d, err := s.Env.WaitDevice(c.ToplayerDevice, "toplayer", c)
	if err != nil {
		return "", "", err
	}
	if d.Path == s.RootDev.Path {
		return filepath.Join(s.Env.TopDir, c.ToplayerPath), rootDesc, nil
	}
	fstype := c.ToplayerFSType
	if fstype == "" {
		fstype = d.FSType
	}
	if fstype == "" {
		return "", "", fmt.Errorf("top-layer device %s (%s): unknown filesystem type; set toplayerfstype=", d.Path, c.Toplayer)
	}
	flags, data := MountOptions(c.ToplayerFlags)
	flags |= unix.MS_RDONLY // dockroot only reads the top layer
	if err := os.MkdirAll(s.Env.ToplayerDir, 0o755); err != nil {
		return "", "", fmt.Errorf("mkdir %s: %w", s.Env.ToplayerDir, err)
	}
	if err := s.Env.Mount(d.Path, s.Env.ToplayerDir, fstype, flags, data); err != nil {
		return "", "", fmt.Errorf("mount top-layer device %s (%s) on %s (%s, ro %s): %w; check toplayerfstype= and toplayerflags=", d.Path, c.Toplayer, s.Env.ToplayerDir, fstype, data, err)
	}
	s.ToplayerDev = s.Env.ToplayerDir
	return filepath.Join(s.Env.ToplayerDir, c.ToplayerPath), d.Path + " (" + c.Toplayer + ")", nil
}

func newRootDetail(s *State) string {
	subvol := s.Config.Subvol
	if s.Existing != nil {
		subvol = s.Existing.Name
	}
	mode := "rw"
	if s.Config.ReadOnly {
		mode = "ro"
	}
	return fmt.Sprintf("subvol=%s on %s, %s", subvol, s.Env.NewRoot, mode)
}

// mountNewRoot mounts the rw layer (or the existing layer chosen instead)
// where switch_root expects it and checks that the image's init is there,
// while the initramfs is still intact to report it. A fresh layer's init
// was chosen before the commit; it is checked again in the mounted root.
func mountNewRoot(s *State) error {
	c := s.Config
	subvol, id := c.Subvol, uint64(0)
	switch {
	case s.Existing != nil:
		subvol, id = s.Existing.Name, s.Existing.SubvolID
	case s.Committed:
		id = s.Layer.SubvolID
	}
	flags, data := MountOptions(c.RootFlags)
	if c.ReadOnly {
		flags |= unix.MS_RDONLY
	} else {
		flags &^= unix.MS_RDONLY
	}
	opts := "subvol=" + subvol
	if id != 0 {
		// btrfs refuses the mount unless both name the same subvolume:
		// a cheap check that NAME is the layer just committed (or the
		// existing layer the one that was listed).
		opts += fmt.Sprintf(",subvolid=%d", id)
	}
	data = joinOpts(opts, data)
	if err := os.MkdirAll(s.Env.NewRoot, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", s.Env.NewRoot, err)
	}
	if err := s.Env.Mount(s.RootDev.Path, s.Env.NewRoot, c.RootFSType, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s (%s, %s): %w", s.RootDev.Path, s.Env.NewRoot, c.RootFSType, data, err)
	}
	if s.InitChecked {
		_, err := ResolveInit(s.Env.NewRoot, s.Init)
		return err
	}
	init, err := s.chooseInit(s.Env.NewRoot)
	if err != nil {
		return err
	}
	s.Init = init
	return nil
}

// kernelInits are the programs the kernel tries when init= is not given
// (init/main.c, kernel_init), in its order.
var kernelInits = []string{"/sbin/init", "/etc/init", "/bin/init", "/bin/sh"}

// chooseInit returns init= when it was given, else the first of the
// kernel's defaults that root (the new root, or the fresh layer before it
// is committed) holds.
func (s *State) chooseInit(root string) (string, error) {
	c := s.Config
	if c.Init != "" && c.Sources["init"] != config.SourceDefault {
		if _, err := ResolveInit(root, c.Init); err != nil {
			return "", err
		}
		return c.Init, nil
	}
	var first error
	for _, p := range kernelInits {
		_, err := ResolveInit(root, p)
		if err == nil {
			if p != kernelInits[0] {
				s.Env.Log.Warnf("the image has no /sbin/init; using %s as the kernel would (set init= to choose)", p)
			}
			return p, nil
		}
		if first == nil {
			first = err
		}
	}
	return "", fmt.Errorf("the image has none of %s: %w", strings.Join(kernelInits, ", "), first)
}

func recordBoot(s *State) error {
	c := s.Config
	rec := &bootrecord.Record{
		Schema:         bootrecord.Schema,
		Version:        s.Env.Version,
		Time:           s.Env.now().UTC(),
		Cmdline:        s.Cmdline,
		RootDevice:     s.RootDev.Path + " (" + c.Root + ")",
		RootDevicePath: s.RootDev.Path,
		LayerMode:      string(config.LayerNew),
		Toplayer:       s.Toplayer,
		Fallback:       s.Fallback,
		Hibernation:    s.Hibernation,
		BootCount:      s.BootCount,
		Init:           append([]string{s.Init}, s.InitArgs...),
		ReadOnly:       c.ReadOnly,
		Warnings:       c.Warnings,
		Steps:          append([]bootrecord.Timing(nil), s.runner.timings...),
	}
	if e := s.Existing; e != nil {
		rec.LayerMode = string(e.Mode)
		rec.Layer = bootrecord.Layer{Subvolume: e.Name, SubvolID: e.SubvolID, Image: e.Image, Reason: e.Why}
		if rec.Layer.SubvolID == 0 && s.Env.SubvolID != nil {
			if id, err := s.Env.SubvolID(filepath.Join(s.Env.TopDir, e.Name)); err == nil {
				rec.Layer.SubvolID = id
			}
		}
	} else {
		if img := s.Image; img != nil {
			rec.Ref, rec.ImageID, rec.ChainID, rec.ImageSubvolume = img.Ref, img.ID, img.ChainID, img.Subvolume
		}
		rec.Layer = bootrecord.Layer{Subvolume: c.Subvol, SubvolID: s.Layer.SubvolID, Fresh: true,
			Rotated: s.Layer.Rotated, Deleted: s.Layer.Deleted, Image: rec.ImageID}
	}
	return s.Env.WriteRecord(s.recordPath(), rec)
}

// switchRoot releases the initramfs's own mounts and hands over to the
// image's init. The btrfs top level is unmounted rather than carried into
// the booted system: it would expose every layer and Docker's whole data
// root read-write at /run/dockroot/top, and the host tools (dockroot
// status, gc) mount it themselves when they need it.
func switchRoot(s *State) error {
	for _, m := range []struct {
		dir     string
		mounted bool
	}{{s.ToplayerDev, s.ToplayerDev != ""}, {s.Env.TopDir, s.TopMounted}} {
		if !m.mounted {
			continue
		}
		if err := s.Env.Unmount(m.dir, 0); err != nil {
			s.Env.Log.Warnf("unmount %s: %v; detaching it instead", m.dir, err)
			if err := s.Env.Unmount(m.dir, unix.MNT_DETACH); err != nil {
				s.Env.Log.Warnf("detach %s: %v", m.dir, err)
				continue
			}
		}
		// The empty mount point would otherwise show up in the booted
		// system's /run/dockroot and suggest the top level is there.
		os.Remove(m.dir)
	}
	s.ToplayerDev, s.TopMounted = "", false
	s.Env.Log.Noticef("%s", s.runner.summary())
	return s.Env.SwitchRoot(s.Env.NewRoot, s.Init, s.InitArgs)
}

func joinOpts(a, b string) string {
	if b == "" {
		return a
	}
	return a + "," + b
}

func shortID(id string) string {
	if h, ok := strings.CutPrefix(id, "sha256:"); ok && len(h) > 12 {
		return h[:12]
	}
	return id
}
