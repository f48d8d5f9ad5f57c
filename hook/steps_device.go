// The steps that find the machine: from the pseudo filesystems to the
// mounted btrfs top level.

package hook

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"golang.org/x/sys/unix"
)

// deviceSteps find the machine's devices and mount the btrfs top level.
//
// The hibernation check comes before the btrfs top level is mounted: a
// hibernated kernel must be resumed before anything mounts a filesystem it
// had mounted (Documentation/power/swsusp.rst), and a read-write btrfs
// mount already writes (it replays the log tree).
func deviceSteps() []Step {
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
	}
}

func mountPseudo(s *State) error {
	already, err := s.Env.System.MountPseudo()
	if len(already) > 0 {
		s.Notef("already mounted: %s", strings.Join(already, " "))
	}
	return err
}

func readConfig(s *State) error {
	cmdline, err := s.Env.System.ReadCmdline()
	if err != nil {
		return fmt.Errorf("read the kernel command line: %w", err)
	}
	s.Cmdline = strings.TrimSpace(cmdline)
	s.Env.Log.Printf("cmdline: %s", s.Cmdline)
	cfg, err := s.Env.System.LoadConfig(s.Cmdline)
	if cfg != nil {
		s.Config = cfg
		s.Env.onFail = cfg.OnFail
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
	var fsTypes []string
	if s.Config != nil {
		fsTypes = moduleFSTypes(s.Config)
	}
	summary, err := s.Env.System.LoadModules(s.Env.ModulesList, fsTypes)
	if errors.Is(err, os.ErrNotExist) {
		return Skip("%s does not exist (the kernel has the drivers built in, or the initramfs builder listed none)", s.Env.ModulesList)
	}
	s.Notef("%s", summary)
	return err
}

func waitRoot(s *State) error {
	d, err := s.Env.Devices.Wait(s.Config.RootDevice, "root", s.Config)
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

func hibernationDetail(s *State) string {
	c := s.Config
	var parts []string
	if c.Resume != "" {
		parts = append(parts, "resume="+c.Resume)
	}
	if c.ResumeOffset > 0 {
		parts = append(parts, fmt.Sprintf("resume_offset=%d", c.ResumeOffset))
	}
	if c.NoResume {
		parts = append(parts, "noresume")
	}
	if len(parts) == 0 {
		return "the kernel's resume device"
	}
	return strings.Join(parts, " ")
}

// checkHibernation is the hibernation guard (see package resume): when the
// resume device holds a hibernation image it asks the kernel to resume it
// and, if the boot goes on, makes "choose the rw layer" keep the layer the
// hibernated system had mounted.
func checkHibernation(s *State) error {
	g := s.Env.Hibernation
	if g == nil {
		return Skip("this init has no hibernation guard")
	}
	v := g.Check(s.Config.Resume, int64(s.Config.ResumeOffset), s.Config.NoResume)
	if !v.KeepLayer {
		if v.Device == "" {
			return Skip("%s", v.Reason)
		}
		s.Notef("%s", v.Reason)
		return nil
	}
	h := &bootrecord.Hibernation{Device: v.Device, Reason: v.Reason}
	s.Hibernation = h
	s.Env.Log.Errorf("!!! hibernation: %s", v.Reason)
	if v.TryResume {
		s.Env.Log.Noticef("hibernation: asking the kernel to resume the image on %s; if it does, this boot ends here", v.Device)
		if err := g.Resume(v.Device, v.Offset); err != nil {
			h.ResumeError = err.Error()
			s.Env.Log.Warnf("hibernation: the kernel did not resume: %v", err)
		} else {
			s.Env.Log.Warnf("hibernation: the kernel did not resume from %s (its \"PM:\" lines say why)", v.Device)
		}
	}
	s.Notef("a hibernation image is on %s: the rw layer is kept as it is", orDevice(v.Device))
	return nil
}

func orDevice(dev string) string {
	if dev == "" {
		return "the resume device"
	}
	return dev
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
	err := s.Env.System.Mount(s.RootDev.Path, s.Env.TopDir, c.RootFSType, flags, data)
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
	if rerr := s.Env.System.Mount(s.RootDev.Path, s.Env.TopDir, c.RootFSType, flags|unix.MS_RDONLY, data); rerr != nil {
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

// moduleFSTypes are the filesystem types the boot mounts, whose modules
// the modules step loads: the root's, and the top layer's when it is on
// another filesystem (AnyFilesystem when its type is detected only at
// its mount, after the step).
func moduleFSTypes(c *config.Config) []string {
	fsTypes := []string{c.RootFSType}
	if c.ToplayerPath != "" {
		switch {
		case c.ToplayerFSType != "":
			fsTypes = append(fsTypes, c.ToplayerFSType)
		case c.Toplayer != c.Root:
			fsTypes = append(fsTypes, AnyFilesystem)
		}
	}
	return fsTypes
}
