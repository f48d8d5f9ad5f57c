// Hook mode: dockroot inside the distribution's own initramfs
// (initramfs-tools and dracut today; mkinitcpio is planned, issue 13).
// There dockroot-init is not /init: the generator's /init runs it
// (dockroot-init --hook, from a boot script, or from
// dracut/90dockroot/dockroot-prepare.service under systemd) after the root device exists and before it mounts
// root= with rootflags=. It makes and commits the fresh rw layer under
// subvol=NAME, records the boot, and leaves no mount behind; the
// generator then mounts NAME, which is the fresh layer, and does its own
// switch_root.

package hook

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dockroot/dockroot/config"
)

// PreparePlan returns the steps of hook mode: the standalone boot's steps
// up to and including the commit and the boot record, without loading
// modules (the generator did), without mounting the new root and without
// switch_root (the generator does both), and then a step that releases the
// btrfs top level. The steps are the same Step values Steps returns.
func PreparePlan() []Step {
	var plan []Step
	for _, st := range slices.Concat(deviceSteps(), layerSteps()) {
		if st.Name == "modules" {
			continue
		}
		plan = append(plan, st)
	}
	return append(plan, recordStep(), releaseStep())
}

// releaseStep ends hook mode: it unmounts the btrfs top level and a
// top-layer device of its own, and checks that what the generator is about
// to mount, rootflags=subvol=NAME, is the layer this boot chose.
func releaseStep() Step {
	return Step{Name: "release", Desc: "hand the root over to the distribution's initramfs", Run: release,
		Detail: func(s *State) string { return "unmount " + s.Env.TopDir + "; it mounts subvol=" + s.Config.Subvol }}
}

func release(s *State) error {
	s.releaseTop()
	s.Env.Log.Noticef("%s", s.runner.summary())
	if e := s.Existing; e != nil && e.Name != s.Config.Subvol {
		// The generator mounts rootflags=subvol=NAME as the command line
		// says; dockroot cannot make it mount NAME.prev.1 instead.
		return &HookLayerError{Want: e.Name, Subvol: s.Config.Subvol, Why: e.Why}
	}
	if s.Existing != nil {
		s.Notef("the distribution's initramfs mounts %s as it was left (%s)", s.Config.Subvol, s.Existing.Why)
	} else {
		s.Notef("the distribution's initramfs mounts %s, the fresh layer", s.Config.Subvol)
	}
	return nil
}

// HookLayerError is hook mode asked to boot a layer other than
// rootflags=subvol=NAME (dockroot.layer=previous, or
// dockroot.onfail=previous when only NAME.prev.1 exists): the
// distribution's initramfs mounts NAME, so it cannot.
type HookLayerError struct {
	Want, Subvol, Why string
}

func (e *HookLayerError) Error() string {
	return fmt.Sprintf("%s chose the rw layer %s, but the distribution's initramfs mounts rootflags=subvol=%s; "+
		"in hook mode only %s can boot as it was left (dockroot.layer=current); nothing was changed",
		e.Why, e.Want, e.Subvol, e.Subvol)
}

// Prepare runs hook mode (PreparePlan) and returns what it did. With a
// configuration that names no image (no docker_image= on the command
// line, none in the baked files, no dockroot.layer=) it runs no step and
// returns Nothing: installing dockroot into an initramfs never changes the
// boot of a machine that does not boot an image. Whatever happens, it
// leaves no mount of its own behind.
//
// On failure the error is a *BootError as from Boot; the caller (main)
// exits non-zero, and the generator's script drops to its emergency shell.
// dockroot.onfail=previous is handled inside, as in Boot: it commits
// nothing and NAME boots as it was left.
func Prepare(env *Env) (PrepareResult, error) {
	if why, ok := namesNoImage(env); ok {
		env.Log.Noticef("dockroot %s: nothing to do: %s; the distribution's initramfs boots root= as usual", env.Version, why)
		return PrepareNothing, nil
	}
	if err := runPlan(env, PreparePlan(), (*State).releaseTop); err != nil {
		return PrepareFailed, err
	}
	return PrepareDone, nil
}

// PrepareResult is what Prepare did.
type PrepareResult int

const (
	PrepareFailed  PrepareResult = iota
	PrepareDone                  // the layer subvol=NAME is ready to mount
	PrepareNothing               // no image named: nothing done
)

// namesNoImage says whether the configuration names no image, and why.
// A configuration that cannot be read for another reason (a broken baked
// file, a bad parameter) is not "no image": the plan runs and its config
// step reports the problem.
func namesNoImage(env *Env) (string, bool) {
	cmdline, err := env.System.ReadCmdline()
	if err != nil {
		return "", false
	}
	c, err := env.System.LoadConfig(cmdline)
	if c == nil || c.Image != "" || c.Layer != config.LayerNew {
		return "", false
	}
	if src := c.Sources["docker_image"]; src != "" && src != config.SourceDefault {
		return "", false // set, but empty: the config step says what is wrong
	}
	if !onlyMissing(err) {
		return "", false
	}
	return "no docker_image= on the kernel command line and no image in " +
		config.DefaultFiles.DockrootJSON + " or " + config.DefaultFiles.DockerBtrfsJSON, true
}

// onlyMissing says whether err holds nothing but "not set anywhere"
// problems (a plain root's command line lacks docker_image= and subvol=).
func onlyMissing(err error) bool {
	if err == nil {
		return true
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyMissing(e) {
				return false
			}
		}
		return true
	}
	var ve *config.ValidationError
	return errors.As(err, &ve) && ve.Missing
}
