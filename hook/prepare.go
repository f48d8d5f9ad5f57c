// Hook mode: dockroot inside the distribution's own initramfs
// (initramfs-tools, dracut and mkinitcpio). There dockroot-init is not
// /init: the generator's /init runs it (dockroot-init --hook, from a boot
// script or mkinitcpio's run_hook, or from
// dist/systemd/dockroot-prepare.service in dracut's and mkinitcpio's
// systemd images) after the root device exists and before it mounts
// root= with rootflags=. It makes and commits the fresh rw layer under
// subvol=NAME, records the boot, and leaves no mount behind; the
// generator then mounts NAME, which is the fresh layer, and does its own
// switch_root.

package hook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
	subvol, id := s.Config.Subvol, uint64(0)
	switch {
	case s.Existing != nil:
		subvol, id = s.Existing.Name, s.Existing.SubvolID
	case s.Committed:
		id = s.Layer.SubvolID
	}
	if subvol != s.Config.Subvol && s.Env.RootflagsFile == "" {
		// The generator mounts rootflags=subvol=NAME as the command line
		// says, and cannot be told otherwise.
		return &HookLayerError{Want: subvol, Subvol: s.Config.Subvol, Why: s.Existing.Why}
	}
	if s.Env.RootflagsFile != "" {
		flags, err := HookRootflags(subvol, id, s.Config.RootFlags)
		if err != nil {
			return err
		}
		if err := writeRootflags(s.Env.RootflagsFile, flags); err != nil {
			return err
		}
	}
	switch {
	case subvol != s.Config.Subvol:
		s.Notef("the distribution's initramfs mounts %s instead of %s, as it was left (%s)", subvol, s.Config.Subvol, s.Existing.Why)
	case s.Existing != nil:
		s.Notef("the distribution's initramfs mounts %s as it was left (%s)", subvol, s.Existing.Why)
	default:
		s.Notef("the distribution's initramfs mounts %s, the fresh layer", subvol)
	}
	return nil
}

// HookRootflags is the rootflags= value the generator mounts in hook mode:
// subvol=SUBVOL (and subvolid=ID when known, so btrfs refuses the mount
// unless both name the same subvolume), then the other options of the
// command line's rootflags= in their order. The generator's script pastes
// it into its shell (initramfs-tools: ROOTFLAGS='-o VALUE' in
// /conf/param.conf), so a value that would need quoting is refused.
func HookRootflags(subvol string, id uint64, rest []string) (string, error) {
	opts := []string{"subvol=" + subvol}
	if id != 0 {
		opts = append(opts, fmt.Sprintf("subvolid=%d", id))
	}
	for _, o := range rest {
		if o = strings.TrimSpace(o); o != "" {
			opts = append(opts, o)
		}
	}
	v := strings.Join(opts, ",")
	if i := strings.IndexFunc(v, func(r rune) bool { return !unquoted(r) }); i >= 0 {
		return "", fmt.Errorf("rootflags=%s: %q cannot be handed to the distribution's initramfs unquoted", v, v[i:i+1])
	}
	return v, nil
}

// unquoted says whether r can stand in a shell word unquoted: mount
// options are letters, digits and a few punctuation marks.
func unquoted(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("=,._-+:/@%", r)
}

// writeRootflags writes the rootflags= value for the generator's script,
// one line, replacing a file an earlier run left.
func writeRootflags(path, flags string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write the rootflags for the distribution's initramfs: %w", err)
	}
	if err := os.WriteFile(path, []byte(flags+"\n"), 0o644); err != nil {
		return fmt.Errorf("write the rootflags for the distribution's initramfs: %w", err)
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
