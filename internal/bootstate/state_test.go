package bootstate

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
)

var (
	idA  = "sha256:" + strings.Repeat("a", 64)
	idB  = "sha256:" + strings.Repeat("b", 64)
	idC  = "sha256:" + strings.Repeat("c", 64)
	imgA = Image{ID: idA, Ref: "desk:1"}
	imgB = Image{ID: idB, Ref: "desk:2"}
	imgC = Image{ID: idC, Ref: "desk:3"}
	t0   = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t1   = t0.Add(time.Hour)
)

func trial(img Image, n int) *Trial {
	return &Trial{Image: img, Attempts: n, First: t0, Last: t0}
}

func good(img Image) *Good { return &Good{Image: img, Marked: t0} }

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rec        Record
		req        Image
		tries      int
		wantAction Action
		wantImage  Image
		wantTry    *Trial // Trying after
		wantFell   *Image
		wantMsg    string
	}{
		{"first boot ever", Record{}, imgA, 3, Boot, imgA,
			&Trial{Image: imgA, Attempts: 1, First: t1, Last: t1}, nil, "attempt 1 of 3"},
		{"second boot of the same image", Record{Trying: trial(imgA, 1)}, imgA, 3, Boot, imgA,
			&Trial{Image: imgA, Attempts: 2, First: t0, Last: t1}, nil, "attempt 2 of 3"},
		{"last attempt", Record{Trying: trial(imgB, 2), LastGood: good(imgA)}, imgB, 3, Boot, imgB,
			&Trial{Image: imgB, Attempts: 3, First: t0, Last: t1}, nil, "attempt 3 of 3"},
		{"tries exhausted falls back", Record{Trying: trial(imgB, 3), LastGood: good(imgA)}, imgB, 3, FallBack, imgA,
			trial(imgB, 3), &imgB, "FALLING BACK: desk:2 (bbbbbbbbbbbb) was booted 3 times"},
		{"keeps falling back: the trial is not reset", Record{Trying: trial(imgB, 3), LastGood: good(imgA), FellBack: &imgB}, imgB, 3, FallBack, imgA,
			trial(imgB, 3), &imgB, "booting the last good image desk:1"},
		{"tries lowered below attempts falls back", Record{Trying: trial(imgB, 2), LastGood: good(imgA)}, imgB, 1, FallBack, imgA,
			trial(imgB, 2), &imgB, "dockroot.tries=1"},
		{"tries exhausted but nothing is good", Record{Trying: trial(imgB, 3)}, imgB, 3, Boot, imgB,
			&Trial{Image: imgB, Attempts: 4, First: t0, Last: t1}, nil, "nothing to fall back to"},
		{"the last good image boots uncounted", Record{LastGood: good(imgA)}, imgA, 3, Boot, imgA,
			nil, nil, "marked good on 2026-01-02T03:04:05Z"},
		{"back to the good image ends the trial", Record{Trying: trial(imgB, 3), LastGood: good(imgA), FellBack: &imgB}, imgA, 3, Boot, imgA,
			nil, nil, "marked good"},
		{"another image starts a new trial", Record{Trying: trial(imgB, 3), LastGood: good(imgA), FellBack: &imgB}, imgC, 3, Boot, imgC,
			&Trial{Image: imgC, Attempts: 1, First: t1, Last: t1}, nil, "attempt 1 of 3"},
		{"rebuilt tag is a new image", Record{Trying: trial(Image{ID: idB, Ref: "desk:latest"}, 3), LastGood: good(imgA)}, Image{ID: idC, Ref: "desk:latest"}, 3, Boot, Image{ID: idC, Ref: "desk:latest"},
			&Trial{Image: Image{ID: idC, Ref: "desk:latest"}, Attempts: 1, First: t1, Last: t1}, nil, "attempt 1"},
		{"tries=0 turns counting off", Record{Trying: trial(imgB, 9), LastGood: good(imgA)}, imgB, 0, Boot, imgB,
			trial(imgB, 9), nil, "boot counting is off"},
		{"tries=1: one boot, then fall back", Record{Trying: trial(imgB, 1), LastGood: good(imgA)}, imgB, 1, FallBack, imgA,
			trial(imgB, 1), &imgB, "FALLING BACK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.rec
			var trialBefore Trial
			if tc.rec.Trying != nil {
				trialBefore = *tc.rec.Trying
			}
			rec, d := Decide(tc.rec, tc.req, tc.tries, t1)
			if d.Action != tc.wantAction || d.Image != tc.wantImage || d.Requested != tc.req {
				t.Errorf("decision %v %v (requested %v), want %v %v", d.Action, d.Image, d.Requested, tc.wantAction, tc.wantImage)
			}
			if !reflect.DeepEqual(rec.Trying, tc.wantTry) {
				t.Errorf("Trying = %+v, want %+v", rec.Trying, tc.wantTry)
			}
			if !reflect.DeepEqual(rec.FellBack, tc.wantFell) {
				t.Errorf("FellBack = %+v, want %+v", rec.FellBack, tc.wantFell)
			}
			if !reflect.DeepEqual(rec.LastGood, before.LastGood) {
				t.Errorf("LastGood changed: %+v -> %+v", before.LastGood, rec.LastGood)
			}
			if !strings.Contains(d.Message, tc.wantMsg) {
				t.Errorf("message %q lacks %q", d.Message, tc.wantMsg)
			}
			if d.Action == Boot && rec.Trying != nil && rec.Trying.ID == tc.req.ID && d.Attempt != rec.Trying.Attempts && tc.tries > 0 {
				t.Errorf("Attempt = %d, trial says %d", d.Attempt, rec.Trying.Attempts)
			}
			if tc.rec.Trying != nil && *tc.rec.Trying != trialBefore {
				t.Errorf("Decide modified its input's trial: %+v -> %+v", trialBefore, *tc.rec.Trying)
			}
		})
	}
}

// TestDecideCycle walks the life of an image through the pure rules: three
// boots that never reach mark-good, the fallback, a retry, and a boot that
// works.
func TestDecideCycle(t *testing.T) {
	rec := Record{}.MarkGood(imgA, t0)
	var actions []string
	for i := 0; i < 5; i++ {
		var d Decision
		rec, d = Decide(rec, imgB, 3, t1)
		actions = append(actions, d.Image.Ref)
	}
	if got := strings.Join(actions, " "); got != "desk:2 desk:2 desk:2 desk:1 desk:1" {
		t.Fatalf("five boots of desk:2 with tries=3 booted %s", got)
	}
	rec = rec.Retry()
	rec, d := Decide(rec, imgB, 3, t1)
	if d.Action != Boot || d.Attempt != 1 {
		t.Fatalf("after retry: %+v", d)
	}
	rec = rec.MarkGood(imgB, t1)
	if rec.Trying != nil || rec.FellBack != nil || rec.LastGood.Image != imgB || !rec.LastGood.Marked.Equal(t1) {
		t.Fatalf("after mark-good: %+v", rec)
	}
	if _, d := Decide(rec, imgB, 3, t1); d.Action != Boot || d.Attempt != 0 {
		t.Fatalf("good image counted: %+v", d)
	}
}

func TestMarkGoodKeepsTrialOfAnotherImage(t *testing.T) {
	// After a fallback the booted system marks the image it is running,
	// the last good one: the failed trial must survive, or the next boot
	// would try the bad image again.
	rec := Record{Trying: trial(imgB, 3), LastGood: good(imgA), FellBack: &imgB}
	rec = rec.MarkGood(Image{ID: idA}, t1)
	if rec.Trying == nil || rec.Trying.Attempts != 3 || rec.FellBack == nil {
		t.Errorf("trial of desk:2 lost: %+v", rec)
	}
	if rec.LastGood.Ref != "desk:1" || !rec.LastGood.Marked.Equal(t1) {
		t.Errorf("LastGood = %+v, want desk:1 kept and re-marked", rec.LastGood)
	}
}

func TestStateDirIsTheLayerStateDir(t *testing.T) {
}

func TestLoadSaveRoundTrip(t *testing.T) {
	top := t.TempDir()
	s, err := Load(top)
	if err != nil || s.Trying != nil || s.LastGood != nil {
		t.Fatalf("Load of an empty top level = %+v, %v", s, err)
	}
	s.now = func() time.Time { return t1 }
	d, err := s.BeginBoot(idB, "desk:2", 3)
	if err != nil || d.Attempt != 1 {
		t.Fatalf("BeginBoot = %+v, %v", d, err)
	}
	if _, err := MarkGood(top, imgA); err != nil {
		t.Fatal(err)
	}
	s2, err := Load(top)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Trying == nil || s2.Trying.Image != imgB || s2.Trying.Attempts != 1 || s2.LastGood == nil || s2.LastGood.Image != imgA {
		t.Errorf("reloaded %+v", s2.Record)
	}
	main, _ := os.ReadFile(Path(top))
	bak, _ := os.ReadFile(filepath.Join(top, layout.StateDir, BackupFile))
	if string(main) != string(bak) || len(main) == 0 {
		t.Errorf("backup differs from the state file:\n%s\n%s", main, bak)
	}
	if left, _ := filepath.Glob(filepath.Join(top, layout.StateDir, "*.tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestLoadCorrupt(t *testing.T) {
	goodRec := Record{Version: version, LastGood: good(imgA), Trying: trial(imgB, 2)}
	s := &State{Record: goodRec, top: t.TempDir(), now: time.Now}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	valid, _ := os.ReadFile(Path(s.top))

	for _, tc := range []struct {
		name      string
		main, bak string // "" = missing, "valid" = the saved record
		wantErr   string
		wantGood  bool
		wantTrial bool
	}{
		{"missing both: first boot", "", "", "", false, false},
		{"main truncated, backup good", string(valid[:len(valid)/2]), "valid", "using the backup", true, true},
		{"main garbage, backup good", "\x00\x00\x00", "valid", "using the backup", true, true},
		{"main missing, backup good", "", "valid", "", false, false},
		{"main newer version", `{"version":2}`, "valid", "version 2", true, true},
		{"main with an unknown field", `{"version":1,"x":1}`, "valid", "unknown field", true, true},
		{"main bad id", `{"version":1,"last_good":{"id":"sha256:zz"}}`, "valid", "not sha256:", true, true},
		{"main bad, backup missing", "{", "", "no backup", false, false},
		{"both bad", "{", "[]", "backup is unusable too", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			os.MkdirAll(filepath.Join(top, layout.StateDir), 0o700)
			write := func(name, content string) {
				if content == "" {
					return
				}
				if content == "valid" {
					content = string(valid)
				}
				if err := os.WriteFile(filepath.Join(top, layout.StateDir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			write(File, tc.main)
			write(BackupFile, tc.bak)
			s, err := Load(top)
			if s == nil {
				t.Fatal("Load returned no State")
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Load: %v", err)
			case tc.wantErr != "" && (err == nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Load error = %v, want ErrCorrupt mentioning %q", err, tc.wantErr)
			}
			if (s.LastGood != nil) != tc.wantGood || (s.Trying != nil) != tc.wantTrial {
				t.Errorf("state = %+v; want last good %v, trial %v", s.Record, tc.wantGood, tc.wantTrial)
			}
			// The next save repairs both files.
			if err := s.Save(); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(top); err != nil {
				t.Errorf("after save: %v", err)
			}
		})
	}
}

func TestBeginBootRejectsBadID(t *testing.T) {
	s, _ := Load(t.TempDir())
	d, err := s.BeginBoot("latest", "desk", 3)
	if err == nil || d.Action != Boot || d.Image.Ref != "desk" {
		t.Errorf("BeginBoot(bad id) = %+v, %v; want an uncounted boot and an error", d, err)
	}
	if _, err := os.Stat(Path(s.top)); !os.IsNotExist(err) {
		t.Errorf("state written for a bad id: %v", err)
	}
}

func TestSaveReadOnlyTopIsAnError(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only directories")
	}
	top := t.TempDir()
	os.Chmod(top, 0o500)
	defer os.Chmod(top, 0o700)
	s, _ := Load(top)
	d, err := s.BeginBoot(idA, "desk:1", 3)
	if err == nil || d.Action != Boot || !strings.Contains(err.Error(), "not counted") {
		t.Errorf("BeginBoot on a read-only top level = %+v, %v", d, err)
	}
}
