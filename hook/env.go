package hook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/blockdev"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/machineid"
	"github.com/dockroot/dockroot/internal/resume"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/snapshot/stores"
	"github.com/dockroot/dockroot/toplayer"
	"golang.org/x/sys/unix"
)

// Default paths of a real boot.
const (
	DefaultRunDir      = layout.RunDir
	DefaultTopDir      = "/run/dockroot/top"
	DefaultToplayerDir = "/run/dockroot/toplayer"
	DefaultNewRoot     = "/newroot"
	DefaultModulesList = "/" + layout.ModulesList
	// DefaultModulesTable is the module table beside the list; the init
	// loads by device alias when it exists.
	DefaultModulesTable = "/" + layout.ModulesTable
)

// NewEnv returns the Env of a real boot: the kernel's paths and system
// calls, and the config, blockdev, kmod, snapshot, toplayer, resume,
// bootstate, freespace and machineid packages.
func NewEnv(log Logger, version string) *Env {
	machine := machineid.Default()
	hp := &hotplug{log: log, table: DefaultModulesTable, sys: "/sys"}
	return &Env{
		Log:         log,
		Version:     version,
		RunDir:      DefaultRunDir,
		TopDir:      DefaultTopDir,
		ToplayerDir: DefaultToplayerDir,
		NewRoot:     DefaultNewRoot,
		ModulesList: DefaultModulesList,

		System:      system{log: log, hp: hp},
		Devices:     devices{log: log, hp: hp},
		Images:      images{},
		Layers:      layers{log: log},
		Bases:       bases{log: log},
		Hibernation: resume.NewProber(log.Debugf),
		BootCount:   bootCounter{},
		Machine:     &machine,
	}
}

// system is the System of a real boot: the running kernel and the
// initramfs's files under /.
type system struct {
	log Logger
	hp  *hotplug
}

func (system) MountPseudo() ([]string, error) { return MountPseudoFS() }

func (system) ReadCmdline() (string, error) {
	b, err := os.ReadFile("/proc/cmdline")
	return string(b), err
}

func (system) LoadConfig(cmdline string) (*config.Config, error) {
	return config.Load(cmdline, os.DirFS("/"))
}

func (s system) LoadModules(list string, fsTypes []string) (string, error) {
	return s.hp.load(list, fsTypes)
}

func (system) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

func (system) Unmount(target string, flags int) error { return unix.Unmount(target, flags) }

func (system) WriteRecord(path string, rec *bootrecord.Record) error {
	return bootrecord.Write(path, rec)
}

func (s system) SwitchRoot(newRoot, init string, args []string) error {
	s.hp.stop()
	return SwitchRoot(s.log, newRoot, init, args)
}

func (system) Now() time.Time { return time.Now() }

// images is the Images of a real boot: package stores.
type images struct{}

func (images) Open(kind, top string, paths stores.Paths) (snapshot.Store, error) {
	return stores.OpenPaths(kind, top, paths)
}

// layers is the Layers of a real boot: rwlayer, toplayer and freespace.
type layers struct{ log Logger }

func (layers) List(l *rwlayer.Layers) ([]rwlayer.LayerInfo, error) { return l.List() }

func (ls layers) Prepare(l *rwlayer.Layers, from string) (Pending, error) {
	l.Log = ls.log.Printf
	p, err := l.Prepare(from)
	if err != nil {
		return nil, err // not a nil *rwlayer.Pending in a non-nil Pending
	}
	return p, nil
}

func (ls layers) ApplyTop(root, src string) (toplayer.Summary, error) {
	return toplayer.ApplyWith(root, src, toplayer.Options{Log: ls.log.Printf})
}

func (layers) SubvolID(path string) (uint64, error) { return btrfs.SubvolID(path) }

func (layers) FreeSpace(top string) (freespace.Space, error) {
	return freespace.CheckFreeSpace(top, freespace.MinFree)
}

// bases is the Bases of a real boot: rwlayer.Bases, keyed with
// toplayer.TakeFingerprint.
type bases struct{ log Logger }

func (b bases) Key(top, layer string, img *snapshot.Image, src, desc string) (rwlayer.BaseKey, error) {
	fp, err := toplayer.TakeFingerprint(src)
	if err != nil {
		return rwlayer.BaseKey{}, err
	}
	b.log.Debugf("top layer: fingerprint %s of %d entries on %s", fp.Sum[:16], fp.Entries, fp.FSType)
	return rwlayer.NewBaseKey(top, layer, img, desc, fp.Sum)
}

// combineBaseKeys is the key of a top layer of several directories on the
// device desc: keys are each applied directory's own key (Bases.Key), in
// order, and skipped the directories of toplayer_path= left out. The
// fingerprint covers every directory's path and fingerprint in order and
// the skipped ones, so adding, removing, reordering or changing any of
// them, or a skipped directory appearing, makes a new base. One directory
// and nothing skipped keeps that directory's own key: the key of a single
// toplayer_path= is what it was before lists.
func combineBaseKeys(desc string, keys []rwlayer.BaseKey, skipped []string) rwlayer.BaseKey {
	if len(keys) == 1 && len(skipped) == 0 {
		return keys[0]
	}
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s\n", len(s), s) }
	paths := make([]string, len(keys))
	for i, k := range keys {
		paths[i], _ = strings.CutPrefix(k.Toplayer, desc+":")
		field("applied")
		field(k.Toplayer)
		field(k.Fingerprint)
	}
	for _, sk := range skipped {
		field("skipped")
		field(sk)
	}
	k := keys[0]
	k.Toplayer = desc + ":" + strings.Join(paths, ",")
	k.Fingerprint = hex.EncodeToString(h.Sum(nil))
	return k
}

func (b bases) Find(top string, k rwlayer.BaseKey) (string, bool) {
	return (&rwlayer.Bases{Top: top}).Find(k)
}

func (b bases) Save(top, from string, k rwlayer.BaseKey) (string, []string, error) {
	return (&rwlayer.Bases{Top: top, Log: b.log.Printf}).Save(from, k)
}

// bootCounter is the BootCounter of a real boot: the boot-state file on the
// btrfs top level mounted at top. A state file that cannot be read is
// replaced by its backup or started afresh (bootstate.Load); both that and
// a failed save come back as the error, beside a usable decision.
type bootCounter struct{}

func (bootCounter) BeginBoot(top, imageID, ref string, tries int) (bootstate.Decision, *bootstate.Good, error) {
	st, lerr := bootstate.Load(top)
	d, err := st.BeginBoot(imageID, ref, tries)
	return d, st.LastGood, errors.Join(lerr, err)
}

// devices is the Devices of a real boot: package blockdev.
type devices struct {
	log Logger
	hp  *hotplug
}

func (d devices) Wait(spec config.DeviceSpec, what string, cfg *config.Config) (Device, error) {
	dev, err := waitDevice(d.log, spec, what, cfg, d.hp.Wake())
	if err != nil {
		return dev, withModuleFailures(err, d.hp.failures())
	}
	return dev, nil
}

// waitDevice waits for spec with the config's rootwait, rootdelay= and
// dockroot.timeout=. rootdelay= applies to the root device only, as in the
// kernel. wake, when not nil, signals that a block device appeared
// (uevents); the scan then runs on each signal, and polls only as a
// fallback.
func waitDevice(log Logger, spec config.DeviceSpec, what string, cfg *config.Config, wake <-chan struct{}) (Device, error) {
	limit, forever := cfg.DeviceWait()
	o := blockdev.WaitOptions{What: what, Log: log.Printf, Wake: wake}
	if forever {
		o.RootWait = true
	} else {
		o.Timeout = limit
	}
	if what == "root" {
		o.RootDelay = cfg.RootDelay
	}
	// The scanner rescans every 200 ms; say each of its remarks once.
	seen := map[string]bool{}
	s := blockdev.NewScanner(func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if !seen[msg] {
			seen[msg] = true
			log.Warnf("%s", msg)
		}
	})
	d, err := s.Wait(context.Background(), spec, o)
	if err != nil {
		return Device{}, err
	}
	return Device{Path: d.Path, FSType: d.Type}, nil
}
