package hook

import (
	"errors"
	"fmt"

	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/freespace"
	"golang.org/x/sys/unix"
)

// beginBoot is Env.BeginBoot of a real boot: the boot-state file on the
// btrfs top level mounted at top. A state file that cannot be read is
// replaced by its backup or started afresh (bootstate.Load); both that and
// a failed save come back as the error, beside a usable decision.
func beginBoot(top, imageID, ref string, tries int) (bootstate.Decision, *bootstate.Good, error) {
	st, lerr := bootstate.Load(top)
	d, err := st.BeginBoot(imageID, ref, tries)
	return d, st.LastGood, errors.Join(lerr, err)
}

// countBoot counts this boot of the image that is not yet marked good and,
// after dockroot.tries= such boots, switches to the last good image. It is
// optional: a state file that cannot be read or written must not stop a
// boot, it only loses the count.
func countBoot(s *State) error {
	c := s.Config
	if c.Tries <= 0 {
		return Skip("dockroot.tries=0: boot counting is off")
	}
	if s.Env.BeginBoot == nil {
		return Skip("this init does not count boots")
	}
	d, lastGood, err := s.Env.BeginBoot(s.Env.TopDir, s.Image.ID, s.Image.Ref, c.Tries)
	bc := &bootrecord.BootCount{Tries: c.Tries, Attempt: d.Attempt,
		Requested: bootrecord.ImageRef{Ref: s.Image.Ref, ID: s.Image.ID}, Message: d.Message}
	if lastGood != nil {
		bc.LastGood = &bootrecord.ImageRef{Ref: lastGood.Ref, ID: lastGood.ID}
	}
	s.BootCount = bc
	if d.Action != bootstate.FallBack {
		s.Notef("%s", d.Message)
		return err
	}

	s.Env.Log.Errorf("!!! %s", d.Message)
	img, rerr := s.store.Resolve(d.Image.ID)
	if rerr != nil {
		bc.Message += fmt.Sprintf("; but the last good image cannot be booted (%v), so %s boots after all", rerr, d.Requested)
		s.Env.Log.Errorf("!!! cannot boot the last good image %s: %v; booting %s after all", d.Image, rerr, d.Requested)
		s.Notef("no fallback: the last good image is gone")
		return err
	}
	if d.Image.Ref != "" {
		// Resolved by ID, the image's Ref is the ID: say what it was
		// booted as when it was marked good.
		img.Ref = d.Image.Ref
	}
	bc.FellBack = true
	s.Image = img
	s.Notef("FELL BACK to the last good image %s = %s", img.Ref, shortID(img.ID))
	return err
}

// checkFreeSpace refuses to make a new layer on a nearly full filesystem,
// before anything is changed, and warns when space is short (see package
// freespace for the thresholds).
func checkFreeSpace(s *State) error {
	if s.Env.FreeSpace == nil {
		return Skip("this init does not check the free space")
	}
	sp, err := s.Env.FreeSpace(s.Env.TopDir)
	if err != nil {
		return err
	}
	if w := freespace.Warning(s.Env.TopDir, sp); w != "" {
		s.Env.Log.Warnf("%s", w)
	}
	s.Notef("%s free of %s", freespace.Human(sp.Free), freespace.Human(sp.Total))
	return nil
}

// explainNoSpace adds what to do to an error caused by a full filesystem
// (ENOSPC) in any step; the free-space check's own error already says it.
func explainNoSpace(err error) error {
	if !errors.Is(err, unix.ENOSPC) || errors.Is(err, freespace.ErrLowSpace) {
		return err
	}
	return fmt.Errorf("%w\nthe filesystem is full: what this boot created was removed and nothing else was changed. "+
		"Free space, then boot again: remove images you no longer need (docker image prune), old rw layers (dockroot gc, "+
		"or lower dockroot.keep=), and if `btrfs filesystem df` shows metadata full, run `btrfs balance start -dusage=50`", err)
}
