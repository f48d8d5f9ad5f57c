package commands

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"strings"

	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/update"
)

func statusVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "status",
		Summary: "show what dockroot booted: image, rw layer, top layer, boot count, step timings",
		Usage:   "status [--json] [--boot-json PATH]",
		Doc: `Reads the record dockroot-init wrote just before switch_root
(/run/dockroot/boot.json) and shows the image that booted, the rw layer and
the previous layers the boot rotated, where the top layer came from, whether
an existing layer booted as it was left (dockroot.layer=, a hibernation image,
a fallback to a previous layer), boot counting (the attempt, the last good
image, a fallback to it) and the time each boot step took.

Then what 'dockroot update' staged in --boot-dir for the next boot, when
that is not what runs now.

--json prints the record itself, for programs.`,
		Examples: []cli.Example{
			{Command: "status", Doc: "what is this machine running?"},
			{Command: "status --json | jq .steps", Doc: "the step timings as JSON"},
			{Command: "status --boot-json /mnt/run/dockroot/boot.json", Doc: "read another copy of the record"},
		},
		Setup: setupStatus,
	}
}

func setupStatus(fs *flag.FlagSet) func(*Context, []string) error {
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print the boot record as JSON")
	bootDir := fs.String("boot-dir", defaultBootDir, "the boot `DIR` where 'dockroot update' records what it staged")
	record := bootRecordArg(fs)
	return func(ctx *Context, args []string) error {
		rec, _, err := record(args)
		if err != nil {
			return err
		}
		if asJSON {
			enc := json.NewEncoder(ctx.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rec)
		}
		if err := printStatus(ctx.Stdout, rec); err != nil {
			return err
		}
		return printStaged(ctx.Stdout, rec, *bootDir)
	}
}

// printStaged shows what `dockroot update` staged in bootDir that is not
// what runs now: the image the next boot of that entry boots.
func printStaged(w io.Writer, rec *bootrecord.Record, bootDir string) error {
	st, err := update.ReadState(bootDir)
	if err != nil {
		// The boot record is what status is for; the update record only
		// adds to it.
		fmt.Fprintf(w, "\nstaged: not known (%v)\n", err)
		return nil
	}
	var table [][]string
	for _, s := range st.Staged {
		if s.ImageID == rec.ImageID {
			continue
		}
		table = append(table, []string{"staged", fmt.Sprintf("%s (%s), staged %s by dockroot update: the next boot of %s boots it (was %s)",
			familiarRef(s.Ref), shortImageID(s.ImageID), s.Time.Local().Format("2006-01-02 15:04:05 MST"), s.Ref, shortImageID(s.Previous))})
	}
	if len(table) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	return writeTable(w, table)
}

// bootRecordArg registers --boot-json on fs for a verb that takes no
// arguments. The returned function refuses arguments, then reads the
// record; it also returns the path it read.
func bootRecordArg(fs *flag.FlagSet) func(args []string) (*bootrecord.Record, string, error) {
	path := fs.String("boot-json", layout.BootRecord, "read the boot record `FILE`")
	return func(args []string) (*bootrecord.Record, string, error) {
		if len(args) > 0 {
			return nil, *path, cli.Usagef("unexpected argument %q", args[0])
		}
		rec, err := readBootRecord(*path)
		return rec, *path, err
	}
}

// readBootRecord reads boot.json with bootrecord.Read and says what a
// missing one means for the user. Fields a newer init added are ignored,
// so an older CLI still shows what it knows.
func readBootRecord(path string) (*bootrecord.Record, error) {
	rec, err := bootrecord.Read(path)
	var pe *iofs.PathError
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return nil, fmt.Errorf("%s does not exist: this system was not booted by dockroot-init (or /run is not the one it handed over); "+
			"boot an entry from `dockroot menu`, or give --boot-json PATH", path)
	case errors.As(err, &pe):
		return nil, fmt.Errorf("read the boot record: %w", err)
	}
	return rec, err
}

func printStatus(w io.Writer, rec *bootrecord.Record) error {
	var table [][]string
	row := func(k, format string, args ...any) { table = append(table, []string{k, fmt.Sprintf(format, args...)}) }

	if rec.Schema > bootrecord.Schema {
		row("note", "record schema %d is newer than this dockroot (%d): some fields may be missing", rec.Schema, bootrecord.Schema)
	}
	switch {
	case rec.Ref != "":
		row("image", "%s (%s)", familiarRef(rec.Ref), shortImageID(rec.ImageID))
	case rec.Layer.Image != "":
		row("image", "none resolved: the layer was made from image %s", shortImageID(rec.Layer.Image))
	default:
		row("image", "not resolved (see fallback)")
	}
	if rec.ImageStore != "" {
		row("image store", "%s", rec.ImageStore)
	}
	if rec.ImageSubvolume != "" {
		row("image subvolume", "%s", rec.ImageSubvolume)
	}
	row("booted", "%s by dockroot-init %s", rec.Time.Local().Format("2006-01-02 15:04:05 MST"), orDash(rec.Version))
	row("root device", "%s", orDash(rec.RootDevice))
	layer := rec.Layer.Subvolume
	if rec.Layer.SubvolID != 0 {
		layer += fmt.Sprintf(" (subvolume %d)", rec.Layer.SubvolID)
	}
	if rec.Layer.Fresh {
		layer += ", fresh from the image"
	} else {
		layer += ", as it was left (not fresh)"
		if rec.Layer.Reason != "" {
			layer += ": " + rec.Layer.Reason
		}
	}
	if rec.ReadOnly {
		layer += ", read-only"
	}
	row("rw layer", "%s", layer)
	for _, r := range rec.Layer.Rotated {
		// The layer of a boot of an image on trial: rwlayer keeps it
		// outside the numbered previous layers (Layers.LastGood).
		if _, to, ok := strings.Cut(r, " -> "); ok && strings.HasSuffix(to, layout.FailedSuffix) {
			row("rotated", "%s: the last boot's layer was never marked good; kept apart, so %s%s1 is still the last good boot's layer",
				r, strings.TrimSuffix(to, layout.FailedSuffix), layout.PrevInfix)
			continue
		}
		row("rotated", "%s", r)
	}
	for _, d := range rec.Layer.Deleted {
		row("deleted", "%s", d)
	}
	switch t := rec.Toplayer; {
	case t != nil && t.Reused:
		row("top layer", "%s:%s: unchanged, the layer was made from the prepared base %s", t.Device, t.Path, t.Base)
	case t != nil:
		row("top layer", "%s:%s: %d files, %d dirs, %d symlinks, %d whiteouts, %d bytes",
			t.Device, t.Path, t.Summary.Files, t.Summary.Dirs, t.Summary.Symlinks, t.Summary.Whiteouts, t.Summary.Bytes)
		if t.Base != "" {
			row("prepared base", "%s, for the next boot", t.Base)
		}
	default:
		row("top layer", "none")
	}
	if t := rec.Toplayer; t != nil {
		for _, sk := range t.Skipped {
			row("skipped", "%s", sk)
		}
		for _, w := range t.Summary.Warnings {
			row("top layer warning", "%s", w)
		}
	}
	if f := rec.Fallback; f != nil {
		row("FALLBACK", "step %q failed: %s; booted %s instead", f.Step, f.Reason, f.Layer)
	}
	if h := rec.Hibernation; h != nil {
		row("HIBERNATION", "%s", h.Reason)
		if h.ResumeError != "" {
			row("resume", "the kernel did not resume: %s", h.ResumeError)
		}
	}
	if bc := rec.BootCount; bc != nil {
		switch {
		case bc.FellBack:
			row("FALLBACK", "%s", bc.Message)
		case bc.Attempt > 0:
			row("boot count", "attempt %d of dockroot.tries=%d for %s: not marked good yet (dockroot mark-good)",
				bc.Attempt, bc.Tries, imageRefString(bc.Requested))
		default:
			row("boot count", "%s", bc.Message)
		}
		if bc.LastGood != nil {
			row("last good", "%s", imageRefString(*bc.LastGood))
		} else {
			row("last good", "none marked yet")
		}
	}
	row("init", "%s", strings.Join(rec.Init, " "))
	for _, wn := range rec.Warnings {
		row("warning", "%s", wn)
	}
	if err := writeTable(w, table); err != nil {
		return err
	}
	if len(rec.Steps) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	steps := [][]string{{"STEP", "RESULT", "MS", "DETAIL"}}
	var total int64
	for _, s := range rec.Steps {
		detail := s.Note
		if s.Error != "" {
			detail = s.Error
		}
		steps = append(steps, []string{s.Desc, s.Result, fmt.Sprint(s.MS), detail})
		total += s.MS
	}
	steps = append(steps, []string{"total", "", fmt.Sprint(total), ""})
	return writeTable(w, steps)
}

func imageRefString(r bootrecord.ImageRef) string {
	if r.Ref == "" || r.Ref == r.ID {
		return shortImageID(r.ID)
	}
	return fmt.Sprintf("%s (%s)", familiarRef(r.Ref), shortImageID(r.ID))
}

func shortImageID(id string) string {
	hex := strings.TrimPrefix(id, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	if hex == "" {
		return "-"
	}
	return hex
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
