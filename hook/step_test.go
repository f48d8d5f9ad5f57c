package hook

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/bootrecord"
)

// fakeClock advances by step on every call, so durations are non-zero
// without sleeping. Tests never assert the values.
func fakeClock(step time.Duration) func() time.Time {
	t := time.Unix(1700000000, 0)
	return func() time.Time { t = t.Add(step); return t }
}

func TestRunnerLogsStartDoneFailed(t *testing.T) {
	log := &memLog{}
	r := &runner{log: log, now: fakeClock(time.Millisecond), total: 10}
	s := &State{}

	ok := Step{Name: "root-device", Desc: "wait for the root device",
		Detail: func(*State) string { return "LABEL=linux" },
		Run:    func(s *State) error { s.Notef("/dev/vda"); return nil }}
	if err := r.run(3, ok, s); err != nil {
		t.Fatalf("run: %v", err)
	}
	bad := Step{Name: "image", Desc: "resolve the image",
		Run: func(*State) error { return errors.New("image \"x\" not found") }}
	err := r.run(5, bad, s)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("failed step returned %v, want its error", err)
	}

	for _, want := range [][]string{
		{"INFO", "[3/10] wait for the root device: starting (LABEL=linux)"},
		{"INFO", "[3/10] wait for the root device: done in ", " ms: /dev/vda"},
		{"INFO", "[5/10] resolve the image: starting"},
		{"ERR", "[5/10] resolve the image: failed after ", " ms: image \"x\" not found"},
	} {
		if log.find(want...) == "" {
			t.Errorf("no log line with %q in:\n%s", want, log)
		}
	}
	if len(r.timings) != 2 {
		t.Fatalf("timings = %+v, want 2", r.timings)
	}
	if got := r.timings[0]; got.Step != "root-device" || got.Result != bootrecord.ResultOK || got.Note != "/dev/vda" {
		t.Errorf("timing 0 = %+v", got)
	}
	if got := r.timings[1]; got.Step != "image" || got.Result != bootrecord.ResultFailed || !strings.Contains(got.Error, "not found") {
		t.Errorf("timing 1 = %+v", got)
	}
}

func TestRunnerRecoversPanics(t *testing.T) {
	log := &memLog{}
	r := &runner{log: log, now: fakeClock(time.Millisecond), total: 2}
	st := Step{Name: "boom", Desc: "explode", Run: func(*State) error {
		var m map[string]int
		m["x"]++ // nil map write panics
		return nil
	}}
	err := r.run(1, st, &State{})
	if err == nil || !strings.Contains(err.Error(), "panicked") || !strings.Contains(err.Error(), "explode") {
		t.Fatalf("err = %v, want a panic turned into an error naming the step", err)
	}
	if len(r.timings) != 1 || r.timings[0].Result != bootrecord.ResultFailed {
		t.Errorf("timings = %+v, want one failure", r.timings)
	}
	if log.find("ERR", "[1/2] explode: failed after") == "" {
		t.Errorf("no failure line:\n%s", log)
	}

	// A panicking Detail must not stop the step.
	st = Step{Name: "d", Desc: "detail", Detail: func(s *State) string { return s.Config.Root },
		Run: func(*State) error { return nil }}
	if err := r.run(2, st, &State{}); err != nil {
		t.Fatalf("step with panicking detail: %v", err)
	}
}

func TestRunnerOptionalAndSkip(t *testing.T) {
	log := &memLog{}
	r := &runner{log: log, now: fakeClock(time.Millisecond), total: 3}
	opt := Step{Name: "modules", Desc: "load kernel modules", Optional: true,
		Run: func(*State) error { return errors.New("finit_module btrfs: exec format error") }}
	if err := r.run(1, opt, &State{}); err == nil {
		t.Fatal("optional failure: the runner still returns the error (Boot decides to go on)")
	}
	if log.find("WARN", "[1/3] load kernel modules (optional): failed after", "continuing without it", "exec format error") == "" {
		t.Errorf("no optional-failure line:\n%s", log)
	}

	sk := Step{Name: "t", Desc: "apply the top layer", Run: func(*State) error { return Skip("toplayer_path= is empty") }}
	if err := r.run(2, sk, &State{}); err != nil {
		t.Fatalf("skip returned %v, want nil", err)
	}
	if log.find("INFO", "[2/3] apply the top layer: skipped: toplayer_path= is empty") == "" {
		t.Errorf("no skip line:\n%s", log)
	}
	if got := r.timings[1]; got.Result != bootrecord.ResultSkipped || got.Note != "toplayer_path= is empty" {
		t.Errorf("skip timing = %+v", got)
	}
}
