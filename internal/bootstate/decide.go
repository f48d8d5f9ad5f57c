package bootstate

import (
	"fmt"
	"time"
)

// Action is what the boot does with the image it was asked for.
type Action int

const (
	// Boot the requested image.
	Boot Action = iota
	// FallBack: boot Decision.Image, the last good image, instead.
	FallBack
)

func (a Action) String() string {
	if a == FallBack {
		return "fall back to the last good image"
	}
	return "boot"
}

// Decision is what BeginBoot decided, and the console line that says why.
type Decision struct {
	Action    Action
	Image     Image // what to boot: Requested, or the last good image
	Requested Image
	Attempt   int // the counted boot of Requested this is, 1-based; 0 when not counted
	Tries     int
	Message   string
}

// Decide is the boot-counting rule, pure: given the record, the image this
// boot was asked for and dockroot.tries=, it returns the new record and the
// decision.
//
//   - tries 0 turns counting off: boot, record unchanged.
//   - The last good image boots uncounted.
//   - Any other image is counted: the first boot of an image starts its
//     trial at 1, each later boot adds one, until mark-good ends the trial.
//   - A boot after `tries` counted boots without mark-good falls back to
//     the last good image, and keeps doing so (the trial is not reset)
//     until the user marks, retries or changes the image. With no last good
//     image there is nothing to fall back to: the image boots, counted.
func Decide(r Record, req Image, tries int, now time.Time) (Record, Decision) {
	r.Version = version
	d := Decision{Action: Boot, Image: req, Requested: req, Tries: tries}
	switch {
	case tries <= 0:
		d.Message = fmt.Sprintf("booting %s; boot counting is off (dockroot.tries=0)", req)
		return r, d
	case r.LastGood != nil && r.LastGood.ID == req.ID:
		d.Message = fmt.Sprintf("booting %s, marked good on %s", req, stamp(r.LastGood.Marked))
		r.Trying, r.FellBack = nil, nil
		return r, d
	}
	if r.Trying == nil || r.Trying.ID != req.ID {
		r.Trying = &Trial{Image: req, First: now}
	}
	t := *r.Trying
	if t.Ref == "" {
		t.Ref = req.Ref
	}
	if t.Attempts >= tries && r.LastGood != nil {
		d.Action, d.Image, d.Attempt = FallBack, r.LastGood.Image, 0
		d.Message = fmt.Sprintf("FALLING BACK: %s was booted %d times without being marked good (dockroot.tries=%d); "+
			"booting the last good image %s, marked good on %s. To try %s again run `dockroot retry`, "+
			"or boot another image",
			req, t.Attempts, tries, r.LastGood.Image, stamp(r.LastGood.Marked), req)
		fb := req
		r.Trying, r.FellBack = &t, &fb
		return r, d
	}
	t.Attempts++
	t.Last = now
	r.Trying, r.FellBack = &t, nil
	d.Attempt = t.Attempts
	switch {
	case t.Attempts > tries:
		d.Message = fmt.Sprintf("booting %s, attempt %d: more than dockroot.tries=%d without mark-good, "+
			"but no image was ever marked good, so there is nothing to fall back to", req, t.Attempts, tries)
	default:
		d.Message = fmt.Sprintf("booting %s, attempt %d of %d until `dockroot mark-good` runs in the booted system", req, t.Attempts, tries)
	}
	return r, d
}

// MarkGood records img as the last good image and ends its trial. It is
// pure; the package-level MarkGood loads, applies and saves.
func (r Record) MarkGood(img Image, now time.Time) Record {
	r.Version = version
	if r.LastGood != nil && r.LastGood.ID == img.ID && img.Ref == "" {
		img.Ref = r.LastGood.Ref
	}
	r.LastGood = &Good{Image: img, Marked: now}
	if r.Trying != nil && r.Trying.ID == img.ID {
		r.Trying, r.FellBack = nil, nil
	}
	return r
}

// Retry forgets the attempts of the image being tried, so it gets
// dockroot.tries= boots again.
func (r Record) Retry() Record {
	r.Version = version
	r.Trying, r.FellBack = nil, nil
	return r
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "an unknown date"
	}
	return t.UTC().Format(time.RFC3339)
}

// BeginBoot counts this boot of imageID (booted as ref) and decides, with
// Decide, whether to boot it or the last good image; then it saves the
// record. The Decision is valid even when saving fails: the error is for
// the console, and the boot goes on.
func (s *State) BeginBoot(imageID, ref string, tries int) (Decision, error) {
	if err := checkID(imageID); err != nil {
		return Decision{Action: Boot, Image: Image{ID: imageID, Ref: ref}, Requested: Image{ID: imageID, Ref: ref}, Tries: tries,
			Message: fmt.Sprintf("booting %s uncounted: %v", ref, err)}, fmt.Errorf("boot counting: %w", err)
	}
	rec, d := Decide(s.Record, Image{ID: imageID, Ref: ref}, tries, s.now().UTC())
	if tries <= 0 {
		return d, nil
	}
	s.Record = rec
	if err := s.Save(); err != nil {
		return d, fmt.Errorf("boot counting: %w; this boot is not counted", err)
	}
	return d, nil
}

// MarkGood records img as the last good image in the state on the btrfs top
// level mounted at top (what `dockroot mark-good` calls with the image
// /run/dockroot/boot.json names). A corrupt state file is replaced; its
// error is returned only if saving fails too.
func MarkGood(top string, img Image) (*State, error) {
	if err := checkID(img.ID); err != nil {
		return nil, fmt.Errorf("image ID: %w", err)
	}
	s, _ := Load(top)
	s.Record = s.Record.MarkGood(img, s.now().UTC())
	if err := s.Save(); err != nil {
		return nil, fmt.Errorf("record %s as good: %w", img, err)
	}
	return s, nil
}

// Retry clears the trial in the state on the btrfs top level mounted at
// top (`dockroot retry`).
func Retry(top string) (*State, error) {
	s, _ := Load(top)
	s.Record = s.Record.Retry()
	if err := s.Save(); err != nil {
		return nil, fmt.Errorf("clear the trial: %w", err)
	}
	return s, nil
}
