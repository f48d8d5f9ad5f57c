package hook

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/blockdev"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/internal/layout"
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
)

// NewEnv returns the Env of a real boot: the kernel's paths, the config,
// blockdev, kmod, snapshot, toplayer, resume, bootstate and freespace
// packages, and real system calls.
func NewEnv(log Logger, version string) *Env {
	return &Env{
		Log:         log,
		Version:     version,
		RunDir:      DefaultRunDir,
		TopDir:      DefaultTopDir,
		ToplayerDir: DefaultToplayerDir,
		NewRoot:     DefaultNewRoot,
		ModulesList: DefaultModulesList,

		MountPseudo: MountPseudoFS,
		ReadCmdline: func() (string, error) {
			b, err := os.ReadFile("/proc/cmdline")
			return string(b), err
		},
		LoadConfig: func(cmdline string) (*config.Config, error) {
			return config.Load(cmdline, os.DirFS("/"))
		},
		LoadModules: func(list string) (string, error) { return loadModuleList(log, list) },
		WaitDevice: func(spec config.DeviceSpec, what string, cfg *config.Config) (Device, error) {
			return waitDevice(log, spec, what, cfg)
		},
		Mount:   unix.Mount,
		Unmount: unix.Unmount,
		OpenStore: func(kind, top, dockerPath string) (Resolver, error) {
			return stores.Open(kind, top, dockerPath)
		},
		ListLayers: func(top, name, dockerPath string) ([]rwlayer.LayerInfo, error) {
			return (&rwlayer.Layers{Top: top, Name: name, DockerPath: dockerPath}).List()
		},
		Hibernation: resume.NewProber(log.Debugf),
		BeginBoot:   beginBoot,
		FreeSpace: func(top string) (freespace.Space, error) {
			return freespace.CheckFreeSpace(top, freespace.MinFree)
		},
		PrepareLayer: func(req LayerRequest) (PendingLayer, error) {
			l := &rwlayer.Layers{Top: req.Top, Name: req.Name, Keep: req.Keep,
				DockerPath: req.DockerPath, Image: req.ImageID, Log: log.Printf}
			p, err := l.Prepare(req.ImageSubvol)
			if err != nil {
				return nil, err
			}
			return pendingLayer{p}, nil
		},
		ApplyTop: func(newRoot, src string) (toplayer.Summary, error) {
			return toplayer.ApplyWith(newRoot, src, toplayer.Options{Log: log.Printf})
		},
		Bases:       bases{log: log},
		SubvolID:    btrfs.SubvolID,
		WriteRecord: bootrecord.Write,
		SwitchRoot: func(newRoot, init string, args []string) error {
			return SwitchRoot(log, newRoot, init, args)
		},
		Now: time.Now,
	}
}

// bases is the BaseStore of a real boot: rwlayer.Bases, keyed with
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

func (b bases) Find(top string, k rwlayer.BaseKey) (string, bool) {
	return (&rwlayer.Bases{Top: top}).Find(k)
}

func (b bases) Save(top, from string, k rwlayer.BaseKey) (string, []string, error) {
	return (&rwlayer.Bases{Top: top, Log: b.log.Printf}).Save(from, k)
}

// pendingLayer adapts *rwlayer.Pending to PendingLayer.
type pendingLayer struct{ p *rwlayer.Pending }

func (l pendingLayer) Path() string  { return l.p.Path() }
func (l pendingLayer) MetadataOnly() { l.p.MetadataOnly() }
func (l pendingLayer) Abort() error  { return l.p.Abort() }
func (l pendingLayer) Commit() (LayerResult, error) {
	r, err := l.p.Commit()
	if err != nil {
		return LayerResult{}, err
	}
	return LayerResult{Path: r.Path, SubvolID: r.SubvolID, Rotated: r.Rotated, Deleted: r.Deleted, Warnings: r.Warnings}, nil
}

// waitDevice waits for spec with the config's rootwait, rootdelay= and
// dockroot.timeout=. rootdelay= applies to the root device only, as in the
// kernel.
func waitDevice(log Logger, spec config.DeviceSpec, what string, cfg *config.Config) (Device, error) {
	limit, forever := cfg.DeviceWait()
	o := blockdev.WaitOptions{What: what, Log: log.Printf}
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
