package update

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// Options say what `dockroot update` pulls and where it stages it.
type Options struct {
	// Refs to pull; none means every reference installed in the boot
	// directory, or else the one that booted (boot record).
	Refs   []string
	DryRun bool
	// Progress receives the pull's progress: one line per layer step,
	// or, when Terminal, one line rewritten in place per reference.
	Progress io.Writer
	Terminal bool
	Now      func() time.Time
}

// Outcomes of one reference.
const (
	Unchanged     = "unchanged"   // the pull brought nothing new for the boot entry
	OutcomeStaged = "staged"      // a new image's kernel is installed; it boots next time
	WouldStage    = "would-stage" // --dry-run: the registry has another image
	Failed        = "failed"
)

// RefResult is what happened to one reference.
type RefResult struct {
	Ref     string `json:"ref"`
	Outcome string `json:"outcome"`
	// Before is the image the boot entry (or, without one, the tag)
	// named before; After what the tag names now.
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Result is the whole run.
type Result struct {
	Refs  []RefResult `json:"refs"`
	Menus []string    `json:"menus,omitempty"` // menu files rewritten
}

// RefError: pulling or staging these references failed; the others'
// results stand.
type RefError struct{ Refs []RefResult }

func (e *RefError) Error() string {
	var parts []string
	for _, r := range e.Refs {
		parts = append(parts, r.Ref+": "+r.Error)
	}
	return "update " + strings.Join(parts, "; ")
}

// Run pulls each reference and stages what changed. A reference whose
// pull fails, or whose new kernel cannot be installed, keeps its boot
// entry and its image as they were (the tag is moved back to the image it
// named); the others go on. Menus are rewritten once at the end, when
// anything was staged. The error is a *RefError when only some references
// failed.
func (e *Engine) Run(ctx context.Context, o Options) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	refs, err := e.defaultRefs(o.Refs)
	if err != nil {
		return nil, err
	}
	installed := map[string]string{} // full ref -> image ID of its entry
	in, err := bootmenu.ReadInstalled(e.BootDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, i := range in {
		installed[fullRef(i.Ref)] = i.ImageID
	}
	state, err := ReadState(e.BootDir)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	var failed []RefResult
	staged := 0
	for _, ref := range refs {
		r := e.one(ctx, ref, installed, o)
		if r.Outcome == OutcomeStaged {
			staged++
			state.Stage(Staged{Ref: ref, ImageID: r.After, Previous: r.Before, Time: o.Now().UTC()})
		}
		if r.Outcome == Failed {
			failed = append(failed, r)
		}
		res.Refs = append(res.Refs, r)
	}
	if staged > 0 {
		if err := state.Write(e.BootDir); err != nil {
			return res, err
		}
		menus, err := e.Menus(ctx)
		res.Menus = menus
		if err != nil {
			return res, err
		}
	}
	if err := e.Protect(ctx, o.DryRun); err != nil {
		return res, err
	}
	if len(failed) > 0 {
		return res, &RefError{Refs: failed}
	}
	return res, nil
}

func (e *Engine) defaultRefs(refs []string) ([]string, error) {
	if len(refs) > 0 {
		return refs, nil
	}
	in, err := bootmenu.ReadInstalled(e.BootDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, i := range in {
		refs = append(refs, i.Ref)
	}
	if len(refs) > 0 {
		return refs, nil
	}
	b, err := e.ReadBooted()
	if err != nil {
		return nil, err
	}
	if b.Ref != "" {
		return []string{b.Ref}, nil
	}
	return nil, fmt.Errorf("nothing to update: %s holds no installed image and this system was not booted from an image tag (%s); name the references: update REF", e.BootDir, e.BootRecord)
}

// one pulls and stages ref.
func (e *Engine) one(ctx context.Context, ref string, installed map[string]string, o Options) RefResult {
	r := RefResult{Ref: ref}
	fail := func(err error) RefResult {
		r.Outcome, r.Error = Failed, err.Error()
		return r
	}
	before := ""
	if ins, err := e.Client.ImageInspect(ctx, ref); err == nil {
		before = ins.ID
	}
	entry, hasEntry := installed[fullRef(ref)]
	r.Before = before
	if hasEntry {
		r.Before = entry
	}
	if o.DryRun {
		return e.dryRun(ctx, r, before)
	}
	if err := e.pull(ctx, ref, o); err != nil {
		return fail(err)
	}
	ins, err := e.Client.ImageInspect(ctx, ref)
	if err != nil {
		return fail(fmt.Errorf("inspect %s after the pull: %w", ref, err))
	}
	r.After = ins.ID
	if r.After == r.Before {
		r.Outcome = Unchanged
		return r
	}
	if _, err := e.Install(ctx, ref); err != nil {
		// The tag moved with the pull: put it back, so the entry boots the
		// image its kernel and initramfs belong to.
		if before != "" {
			if _, terr := e.Client.ImageTag(ctx, client.ImageTagOptions{Source: before, Target: ref}); terr != nil {
				e.logf("could not tag %s back to %s after the failed install: %v", ref, short(before), terr)
			}
		}
		return fail(err)
	}
	r.Outcome = OutcomeStaged
	return r
}

// dryRun asks the registry which image ref names there, without pulling.
func (e *Engine) dryRun(ctx context.Context, r RefResult, local string) RefResult {
	di, err := e.Client.DistributionInspect(ctx, r.Ref, client.DistributionInspectOptions{})
	if err != nil {
		r.Outcome, r.Error = Failed, fmt.Sprintf("ask the registry for %s: %v", r.Ref, err)
		return r
	}
	digest := di.Descriptor.Digest.String()
	r.After = digest
	if local != "" {
		if ins, err := e.Client.ImageInspect(ctx, local); err == nil {
			for _, rd := range ins.RepoDigests {
				if strings.HasSuffix(rd, "@"+digest) {
					r.Outcome = Unchanged
					return r
				}
			}
		}
	}
	r.Outcome = WouldStage
	return r
}

// pull pulls ref through dockerd, reporting progress.
func (e *Engine) pull(ctx context.Context, ref string, o Options) error {
	resp, err := e.Client.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return &PullError{Ref: ref, Err: err}
	}
	defer resp.Close()
	p := newProgress(o.Progress, ref, o.Terminal)
	for msg, err := range resp.JSONMessages(ctx) {
		if err != nil {
			p.done()
			return &PullError{Ref: ref, Err: err}
		}
		if msg.Error != nil {
			p.done()
			return &PullError{Ref: ref, Err: errors.New(msg.Error.Message)}
		}
		p.add(msg)
	}
	p.done()
	return nil
}

// PullError: dockerd could not pull Ref.
type PullError struct {
	Ref string
	Err error
}

func (e *PullError) Error() string { return fmt.Sprintf("pull %s: %v", e.Ref, e.Err) }
func (e *PullError) Unwrap() error { return e.Err }

// progress shows a pull: on a terminal one line, rewritten, with the
// layers done and the bytes downloaded; otherwise one plain line per
// layer step that is not a byte count.
type progress struct {
	w        io.Writer
	ref      string
	terminal bool
	layers   map[string]string // layer -> last status
	bytes    map[string][2]int64
	last     time.Time
}

func newProgress(w io.Writer, ref string, terminal bool) *progress {
	return &progress{w: w, ref: ref, terminal: terminal, layers: map[string]string{}, bytes: map[string][2]int64{}}
}

func (p *progress) add(m jsonstream.Message) {
	if !p.terminal {
		if m.Status == "Downloading" || m.Status == "Extracting" || m.Status == "Waiting" {
			return
		}
		if m.ID != "" {
			fmt.Fprintf(p.w, "%s: %s: %s\n", p.ref, m.ID, m.Status)
		} else {
			fmt.Fprintf(p.w, "%s: %s\n", p.ref, m.Status)
		}
		return
	}
	if m.ID != "" && m.Status != "" && !strings.HasPrefix(m.Status, "Pulling from") {
		p.layers[m.ID] = m.Status
		if m.Progress != nil && m.Status == "Downloading" {
			p.bytes[m.ID] = [2]int64{m.Progress.Current, m.Progress.Total}
		}
	}
	if time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.line()
}

func (p *progress) line() {
	done := 0
	var cur, total int64
	for id, s := range p.layers {
		if s == "Pull complete" || s == "Already exists" {
			done++
		}
		cur += p.bytes[id][0]
		total += p.bytes[id][1]
	}
	ids := make([]string, 0, len(p.layers))
	for id := range p.layers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	fmt.Fprintf(p.w, "\r\x1b[Kpulling %s: %d/%d layers, %.1f/%.1f MB", p.ref, done, len(ids), float64(cur)/1e6, float64(total)/1e6)
}

func (p *progress) done() {
	if p.terminal {
		p.line()
		fmt.Fprintln(p.w)
	}
}
