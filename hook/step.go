package hook

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/bootrecord"
)

// Step is one named stage of the boot. The sequence is a list of them, so
// the console reads as a checklist and the benchmark reads the same timings.
type Step struct {
	// Name is the stable identifier used in boot.json and benchmarks,
	// e.g. "root-device".
	Name string
	// Desc says what the step does, as logged: "wait for the root device".
	Desc string
	// Optional steps log their failure and the boot continues.
	Optional bool
	// Fresh marks the steps that make a fresh layer from the image. They
	// are skipped when the boot mounts an existing layer as it was left
	// (dockroot.layer=, the hibernation guard), and their failure is what
	// dockroot.onfail=previous answers by booting an existing layer.
	Fresh bool
	// Detail, when set, names the operands on the "starting" line, e.g.
	// "LABEL=linux". It must not fail.
	Detail func(*State) string
	Run    func(*State) error
}

// skipError is returned by a step that had nothing to do.
type skipError struct{ reason string }

func (e *skipError) Error() string { return "skipped: " + e.reason }

// Skip returns the error a step's Run returns when it has nothing to do; the
// runner logs it as skipped, not failed.
func Skip(format string, args ...any) error {
	return &skipError{reason: fmt.Sprintf(format, args...)}
}

// Notef sets the text the runner appends to the step's "done" line, e.g.
// what was found or how much was copied.
func (s *State) Notef(format string, args ...any) {
	s.note = fmt.Sprintf(format, args...)
}

// runner runs steps, logs each the same three ways (starting, done in N ms,
// failed after N ms: reason) and keeps their timings.
type runner struct {
	log     Logger
	now     func() time.Time
	total   int
	timings []bootrecord.Timing
}

// run runs step st as number n of r.total. It returns the step's error (nil
// for a skip); a panic inside the step becomes an error, because PID 1 must
// never die of one.
func (r *runner) run(n int, st Step, s *State) error {
	label := fmt.Sprintf("[%d/%d] %s", n, r.total, st.Desc)
	if st.Optional {
		label += " (optional)"
	}
	start := r.now()
	s.note = ""
	detail := ""
	if st.Detail != nil {
		// A panic in Detail only loses the operands; the step still runs.
		catch(func() { detail = strings.TrimSpace(st.Detail(s)) })
	}
	if detail != "" {
		r.log.Printf("%s: starting (%s)", label, detail)
	} else {
		r.log.Printf("%s: starting", label)
	}

	var err error
	if p, stack := catch(func() { err = st.Run(s) }); p != nil {
		r.log.Errorf("%s: step panicked: %v\n%s", label, p, stack)
		err = fmt.Errorf("%s: internal error (step panicked: %v); this is a dockroot bug, please report it with the console log", st.Desc, p)
	}
	ms := r.now().Sub(start).Milliseconds()
	t := bootrecord.Timing{Step: st.Name, Desc: st.Desc, MS: ms, Result: bootrecord.ResultOK, Note: s.note}
	var skip *skipError
	switch {
	case err == nil:
		if s.note != "" {
			r.log.Printf("%s: done in %d ms: %s", label, ms, s.note)
		} else {
			r.log.Printf("%s: done in %d ms", label, ms)
		}
	case errors.As(err, &skip):
		t.Result, t.Note = bootrecord.ResultSkipped, skip.reason
		r.log.Printf("%s: skipped: %s", label, skip.reason)
		err = nil
	default:
		t.Result, t.Error = bootrecord.ResultFailed, err.Error()
		if st.Optional {
			r.log.Warnf("%s: failed after %d ms, continuing without it: %v", label, ms, err)
		} else {
			r.log.Errorf("%s: failed after %d ms: %v", label, ms, err)
		}
	}
	r.timings = append(r.timings, t)
	return err
}

// catch runs f and returns what it panicked with and where, or nil. It is
// the boot's only recover: a panic inside a step fails that step. A panic
// outside the steps (in the sequencing) goes up to main, whose recover
// reports it and follows dockroot.onfail=.
func catch(f func()) (p any, stack []byte) {
	defer func() {
		if p = recover(); p != nil {
			stack = debug.Stack()
		}
	}()
	f()
	return nil, nil
}

// skip records and logs a step that is not run at all, e.g. the rw layer
// steps when an existing layer boots as it was left.
func (r *runner) skip(n int, st Step, reason string) {
	r.log.Printf("[%d/%d] %s: skipped: %s", n, r.total, st.Desc, reason)
	r.timings = append(r.timings, bootrecord.Timing{Step: st.Name, Desc: st.Desc, Result: bootrecord.ResultSkipped, Note: reason})
}

// summary is one line with every step's time so far, for the kernel log
// (where the per-step lines may be rate-limited away) and benchmarks.
func (r *runner) summary() string {
	var b strings.Builder
	var total int64
	for i, t := range r.timings {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", t.Step, t.MS)
		if t.Result != bootrecord.ResultOK {
			b.WriteString(" " + t.Result)
		}
		total += t.MS
	}
	return fmt.Sprintf("boot steps took %d ms: %s (ms)", total, b.String())
}
