// The steps that hand the machine over: mount the new root, record the
// boot, switch_root.

package hook

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"golang.org/x/sys/unix"
)

// handoverSteps mount the chosen layer as the new root, record the boot
// and hand over to the image's init.
func handoverSteps() []Step {
	return []Step{
		{Name: "new-root", Desc: "mount the new root", Run: mountNewRoot,
			Detail: newRootDetail},
		recordStep(),
		{Name: "switch-root", Desc: "switch to the new root", Run: switchRoot,
			Detail: func(s *State) string { return strings.Join(append([]string{s.Init}, s.InitArgs...), " ") }},
	}
}

// recordStep writes boot.json. It is a step of its own, apart from the
// handover, because a prepare-only plan ends with it too.
func recordStep() Step {
	return Step{Name: "record", Desc: "record the boot", Run: recordBoot,
		Detail: func(s *State) string { return s.recordPath() }}
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
	if err := s.Env.System.Mount(s.RootDev.Path, s.Env.NewRoot, c.RootFSType, flags, data); err != nil {
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
				s.Env.Log.Warnf("the image's %s cannot be run (%v); using %s as the kernel would (set init= to choose)", kernelInits[0], first, p)
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
		Time:           s.Env.System.Now().UTC(),
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
		if rec.Layer.SubvolID == 0 {
			if id, err := s.Env.Layers.SubvolID(filepath.Join(s.Env.TopDir, e.Name)); err == nil {
				rec.Layer.SubvolID = id
			}
		}
	} else {
		if img := s.Image; img != nil {
			rec.Ref, rec.ImageID, rec.ChainID, rec.ImageSubvolume = img.Ref, img.ID, img.ChainID, img.Subvolume
			rec.ImageStore = img.Store
		}
		rec.Layer = bootrecord.Layer{Subvolume: c.Subvol, SubvolID: s.Layer.SubvolID, Fresh: true,
			Rotated: s.Layer.Rotated, Deleted: s.Layer.Deleted, Image: rec.ImageID}
	}
	return s.Env.System.WriteRecord(s.recordPath(), rec)
}

// switchRoot releases the initramfs's own mounts and hands over to the
// image's init.
func switchRoot(s *State) error {
	s.releaseTop()
	s.Env.Log.Noticef("%s", s.runner.summary())
	return s.Env.System.SwitchRoot(s.Env.NewRoot, s.Init, s.InitArgs)
}

// releaseTop unmounts the btrfs top level and a top-layer device of its
// own. The top level is unmounted rather than carried into the booted
// system: it would expose every layer and Docker's whole data root
// read-write at /run/dockroot/top, and the host tools (dockroot status,
// gc) mount it themselves when they need it. A prepare-only plan ends
// with this too, leaving no mounts.
func (s *State) releaseTop() {
	for _, m := range []struct {
		dir     string
		mounted bool
	}{{s.ToplayerDev, s.ToplayerDev != ""}, {s.Env.TopDir, s.TopMounted}} {
		if !m.mounted {
			continue
		}
		if err := s.Env.System.Unmount(m.dir, 0); err != nil {
			s.Env.Log.Warnf("unmount %s: %v; detaching it instead", m.dir, err)
			if err := s.Env.System.Unmount(m.dir, unix.MNT_DETACH); err != nil {
				s.Env.Log.Warnf("detach %s: %v", m.dir, err)
				continue
			}
		}
		// The empty mount point would otherwise show up in the booted
		// system's /run/dockroot and suggest the top level is there.
		os.Remove(m.dir)
	}
	s.ToplayerDev, s.TopMounted = "", false
}
