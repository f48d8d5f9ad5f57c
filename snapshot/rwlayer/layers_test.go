package rwlayer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
	"golang.org/x/sys/unix"
)

func TestPlanRotation(t *testing.T) {
	const (
		x      = "x"
		tmp    = "x.dockroot-tmp"
		failed = "x.failed"
	)
	ex := func(a, b string) layerStep { return layerStep{stepExchange, a, b} }
	mv := func(a, b string) layerStep { return layerStep{stepRename, a, b} }
	rm := func(a string) layerStep { return layerStep{stepDelete, a, ""} }
	for _, tc := range []struct {
		name   string
		r      rotation
		commit bool
		want   []layerStep
	}{
		{"first boot", rotation{Keep: 1, Tmp: tmpPending}, true,
			[]layerStep{mv(tmp, x)}},
		{"first boot keep=0", rotation{Keep: 0, Tmp: tmpPending}, true,
			[]layerStep{mv(tmp, x)}},
		{"second boot keep=1", rotation{Keep: 1, Current: true, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), mv(tmp, "x.prev.1")}},
		{"keep=0 deletes the old layer after the exchange", rotation{Keep: 0, Current: true, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), rm(tmp)}},
		{"keep=0 with leftovers from a larger keep", rotation{Keep: 0, Current: true, Prevs: []int{1, 2}, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), rm("x.prev.2"), rm("x.prev.1"), rm(tmp)}},
		{"keep=1 steady state", rotation{Keep: 1, Current: true, Prevs: []int{1}, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), rm("x.prev.1"), mv(tmp, "x.prev.1")}},
		{"keep=3 steady state shifts oldest first", rotation{Keep: 3, Current: true, Prevs: []int{1, 2, 3}, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), rm("x.prev.3"), mv("x.prev.2", "x.prev.3"), mv("x.prev.1", "x.prev.2"), mv(tmp, "x.prev.1")}},
		{"keep=3 filling up", rotation{Keep: 3, Current: true, Prevs: []int{1}, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), mv("x.prev.1", "x.prev.2"), mv(tmp, "x.prev.1")}},
		{"gaps are closed", rotation{Keep: 3, Current: true, Prevs: []int{2, 5}, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), mv(tmp, "x.prev.1"), mv("x.prev.5", "x.prev.3")}},
		{"gaps with moves both ways", rotation{Keep: 4, Current: true, Prevs: []int{1, 4, 9}, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), mv("x.prev.1", "x.prev.2"), mv(tmp, "x.prev.1"), mv("x.prev.4", "x.prev.3"), mv("x.prev.9", "x.prev.4")}},
		{"keep lowered: oldest deleted", rotation{Keep: 1, Current: true, Prevs: []int{1, 2, 3}, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), rm("x.prev.3"), rm("x.prev.2"), rm("x.prev.1"), mv(tmp, "x.prev.1")}},
		{"unsorted input", rotation{Keep: 2, Current: true, Prevs: []int{2, 1}, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), rm("x.prev.2"), mv("x.prev.1", "x.prev.2"), mv(tmp, "x.prev.1")}},

		// Recovery (no commit).
		{"clean: nothing to do", rotation{Keep: 1, Current: true, Prevs: []int{1}}, false, nil},
		{"first boot: nothing to do", rotation{Keep: 1}, false, nil},
		{"stale prepared layer is deleted", rotation{Keep: 1, Current: true, Prevs: []int{1}, Tmp: tmpPending}, false,
			[]layerStep{rm(tmp)}},
		{"stale prepared layer on first boot", rotation{Keep: 2, Tmp: tmpPending}, false,
			[]layerStep{rm(tmp)}},
		{"displaced old layer becomes prev.1", rotation{Keep: 2, Current: true, Prevs: []int{1}, Tmp: tmpOld}, false,
			[]layerStep{mv("x.prev.1", "x.prev.2"), mv(tmp, "x.prev.1")}},
		{"displaced old layer, prevs already shifted", rotation{Keep: 2, Current: true, Prevs: []int{2}, Tmp: tmpOld}, false,
			[]layerStep{mv(tmp, "x.prev.1")}},
		{"displaced old layer, keep=0", rotation{Keep: 0, Current: true, Tmp: tmpOld}, false,
			[]layerStep{rm(tmp)}},
		{"interrupted shift left a gap", rotation{Keep: 3, Current: true, Prevs: []int{2, 4}}, false,
			[]layerStep{mv("x.prev.2", "x.prev.1"), mv("x.prev.4", "x.prev.2")}},
		{"too many previous layers", rotation{Keep: 1, Current: true, Prevs: []int{1, 2}}, false,
			[]layerStep{rm("x.prev.2")}},

		// A trial that is failing (issue 17 item 10): the displaced layer
		// was made from an image that is not the last good one. It goes
		// to NAME.failed, replacing the one there; NAME.prev.N stay as
		// they are, so NAME.prev.1 is still the last good boot's layer.
		{"paused: failed trial's layer to NAME.failed", rotation{Keep: 1, Current: true, Prevs: []int{1}, Tmp: tmpPending, TmpFailed: true}, true,
			[]layerStep{ex(tmp, x), mv(tmp, failed)}},
		{"paused: replaces the older failed layer after the exchange", rotation{Keep: 1, Current: true, Prevs: []int{1}, Failed: true, Tmp: tmpPending, TmpFailed: true}, true,
			[]layerStep{ex(tmp, x), rm(failed), mv(tmp, failed)}},
		{"paused keep=3: previous layers do not shift", rotation{Keep: 3, Current: true, Prevs: []int{1, 2}, Failed: true, Tmp: tmpPending, TmpFailed: true}, true,
			[]layerStep{ex(tmp, x), rm(failed), mv(tmp, failed)}},
		{"paused with keep lowered: the previous layers are still trimmed", rotation{Keep: 1, Current: true, Prevs: []int{1, 2}, Tmp: tmpPending, TmpFailed: true}, true,
			[]layerStep{ex(tmp, x), mv(tmp, failed), rm("x.prev.2")}},
		{"paused, no previous layer yet", rotation{Keep: 1, Current: true, Tmp: tmpPending, TmpFailed: true}, true,
			[]layerStep{ex(tmp, x), mv(tmp, failed)}},
		{"paused keep=0: deleted as before, nothing to protect", rotation{Keep: 0, Current: true, Tmp: tmpPending, TmpFailed: true}, true,
			[]layerStep{ex(tmp, x), rm(tmp)}},
		{"resumed: a known good layer rotates, NAME.failed stays", rotation{Keep: 1, Current: true, Prevs: []int{1}, Failed: true, Tmp: tmpPending}, true,
			[]layerStep{ex(tmp, x), rm("x.prev.1"), mv(tmp, "x.prev.1")}},
		{"paused recovery: displaced failed layer", rotation{Keep: 1, Current: true, Prevs: []int{1}, Tmp: tmpOld, TmpFailed: true}, false,
			[]layerStep{mv(tmp, failed)}},
		{"paused recovery: the older failed layer was not deleted yet", rotation{Keep: 1, Current: true, Prevs: []int{1}, Failed: true, Tmp: tmpOld, TmpFailed: true}, false,
			[]layerStep{rm(failed), mv(tmp, failed)}},
		{"recovery: a stale prepared layer never goes to NAME.failed", rotation{Keep: 1, Current: true, Prevs: []int{1}, Failed: true, Tmp: tmpPending, TmpFailed: true}, false,
			[]layerStep{rm(tmp)}},
		{"clean with a failed layer: nothing to do", rotation{Keep: 1, Current: true, Prevs: []int{1}, Failed: true}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.Base = x
			got, err := planRotation(tc.r, tc.commit)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(stepStrings(got), "; ") != strings.Join(stepStrings(tc.want), "; ") {
				t.Errorf("plan:\n got  %v\n want %v", got, tc.want)
			}
			checkPlanOutcome(t, tc.r, tc.commit, got)
		})
	}
}

func stepStrings(steps []layerStep) []string {
	var s []string
	for _, st := range steps {
		s = append(s, st.String())
	}
	return s
}

// checkPlanOutcome replays steps on a model of the directory and checks
// the invariants: no rename onto an occupied name or from an empty one,
// NAME never empty once it held a layer, and the final shape NAME,
// prev.1..prev.min(keep, n) with nothing else.
func checkPlanOutcome(t *testing.T, r rotation, commit bool, steps []layerStep) {
	t.Helper()
	dir := map[string]string{} // name -> layer identity
	layers := 0
	if r.Current {
		dir[r.Base] = "current"
		layers++
	}
	for _, n := range r.Prevs {
		dir[prevName(r.Base, n)] = prevName(r.Base, n)
		layers++
	}
	if r.Tmp != tmpNone {
		dir[tmpName(r.Base)] = "tmp"
		if r.Tmp == tmpOld || commit {
			layers++
		}
	}
	if r.Failed {
		dir[r.Base+failedSuffix] = "failed"
	}
	// The layer displaced from NAME (by this commit, or by an interrupted
	// one) of a failing trial goes to NAME.failed, out of the count.
	displaced := "current"
	if !commit {
		displaced = "tmp"
	}
	paused := r.TmpFailed && !r.TmpAdopted && r.Keep > 0 && (r.Tmp == tmpOld || commit && r.Current)
	if paused {
		layers--
	}
	for _, s := range steps {
		if _, ok := dir[s.From]; !ok {
			t.Fatalf("step %v: %s is empty", s, s.From)
		}
		switch s.Kind {
		case stepExchange:
			if _, ok := dir[s.To]; !ok {
				t.Fatalf("step %v: exchange with empty %s", s, s.To)
			}
			dir[s.From], dir[s.To] = dir[s.To], dir[s.From]
		case stepRename:
			if _, ok := dir[s.To]; ok {
				t.Fatalf("step %v: %s is occupied", s, s.To)
			}
			dir[s.To] = dir[s.From]
			delete(dir, s.From)
		case stepDelete:
			delete(dir, s.From)
		}
		if _, ok := dir[r.Base]; r.Current && !ok {
			t.Fatalf("after %v: NAME is empty", s)
		}
	}
	if commit && dir[r.Base] != "tmp" {
		t.Errorf("after commit NAME holds %q, want the new layer", dir[r.Base])
	}
	want := 0
	if _, ok := dir[r.Base]; ok {
		want = 1
		if prevs := layers - 1; prevs > 0 {
			want += min(prevs, r.Keep)
		}
	}
	nprev := want - 1
	switch f, ok := dir[r.Base+failedSuffix]; {
	case paused && f != displaced:
		t.Errorf("after plan: NAME.failed holds %q, want the displaced layer (%s)", f, displaced)
	case !paused && r.Failed && f != "failed":
		t.Errorf("after plan: NAME.failed holds %q, want it untouched", f)
	case !paused && !r.Failed && ok:
		t.Errorf("after plan: NAME.failed holds %q, want none", f)
	}
	if _, ok := dir[r.Base+failedSuffix]; ok {
		want++
	}
	if paused {
		for _, n := range r.Prevs {
			if n <= nprev && dir[prevName(r.Base, n)] != prevName(r.Base, n) {
				t.Errorf("after plan: %s holds %q; a failing trial must not move the previous layers", prevName(r.Base, n), dir[prevName(r.Base, n)])
			}
		}
	}
	if len(dir) != want {
		t.Errorf("after plan: %v, want NAME and %d previous layers", dir, nprev)
	}
	for i := 1; i <= nprev; i++ {
		if _, ok := dir[prevName(r.Base, i)]; !ok {
			t.Errorf("after plan: %s missing in %v", prevName(r.Base, i), dir)
		}
	}
}

func TestPlanRotationErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		r      rotation
		commit bool
	}{
		"negative keep":         {rotation{Base: "x", Keep: -1, Current: true}, false},
		"commit without layer":  {rotation{Base: "x", Keep: 1, Current: true}, true},
		"commit a displaced":    {rotation{Base: "x", Keep: 1, Current: true, Tmp: tmpOld}, true},
		"duplicate prev number": {rotation{Base: "x", Keep: 3, Prevs: []int{1, 1}}, false},
	} {
		if steps, err := planRotation(tc.r, tc.commit); err == nil {
			t.Errorf("%s: no error, plan %v", name, steps)
		}
	}
}

func TestPrevIndex(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		ok   bool
	}{
		{"x.prev.1", 1, true},
		{"x.prev.12", 12, true},
		{"x.prev.0", 0, false},
		{"x.prev.01", 0, false},
		{"x.prev.", 0, false},
		{"x.prev.-1", 0, false},
		{"x.prev.1a", 0, false},
		{"x.prev.1234567890", 0, false},
		{"y.prev.1", 0, false},
		{"x.prev.1.prev.2", 0, false},
		{"x", 0, false},
	} {
		n, ok := prevIndex("x", tc.name)
		if n != tc.n || ok != tc.ok {
			t.Errorf("prevIndex(x, %q) = %d, %v; want %d, %v", tc.name, n, ok, tc.n, tc.ok)
		}
	}
}

func TestCheckLayerName(t *testing.T) {
	for _, tc := range []struct {
		name, docker string
		problem      string // "" = accepted
	}{
		{"docker_rwlayer", layout.DefaultDockerPath, ""},
		{"@/docker_rwlayer", layout.DefaultDockerPath, ""},
		{"var/lib/docker2", layout.DefaultDockerPath, ""},
		{"", layout.DefaultDockerPath, "top level"},
		{".", layout.DefaultDockerPath, "top level"},
		{"var/lib/docker", layout.DefaultDockerPath, "inside the Docker data root"},
		{"var/lib/docker/btrfs/subvolumes/abc", layout.DefaultDockerPath, "inside the Docker data root"},
		{"var", layout.DefaultDockerPath, "contains the Docker data root"},
		{"srv/docker", "srv/docker", "inside the Docker data root"},
		{".dockroot/x", layout.DefaultDockerPath, "state directory"},
		{"x.prev.1", layout.DefaultDockerPath, "rotation names"},
		{"x.dockroot-tmp", layout.DefaultDockerPath, "rotation names"},
		{"x.adopted", layout.DefaultDockerPath, "rotation names"},
		{"@/x.failed", layout.DefaultDockerPath, "rotation names"},
		{"var/lib/containers/storage", layout.DefaultDockerPath, "inside the image store var/lib/containers/storage"},
		{"var/lib/containers/storage/btrfs/subvolumes/abc", layout.DefaultDockerPath, "inside the image store"},
		{"var/lib/containers", layout.DefaultDockerPath, "contains the image store var/lib/containers/storage"},
		{"var/lib/containerd", layout.DefaultDockerPath, "inside the image store var/lib/containerd"},
		{"var/lib/containerd2", layout.DefaultDockerPath, ""},
	} {
		err := checkLayerName(tc.name, tc.name, tc.docker)
		if err == nil {
			err = checkStorePaths(tc.name, tc.name, []string{layout.DefaultPodmanPath, layout.DefaultContainerdPath})
		}
		var ne *NameError
		if err != nil && (!errors.As(err, &ne) || ne.Name != tc.name) {
			t.Errorf("checkLayerName(%q) = %#v, want a *NameError naming it", tc.name, err)
		}
		switch {
		case tc.problem == "" && err != nil:
			t.Errorf("checkLayerName(%q) = %v, want ok", tc.name, err)
		case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
			t.Errorf("checkLayerName(%q) = %v, want %q", tc.name, err, tc.problem)
		}
	}
}

func TestLayerStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), layout.StateDir, LayerStateFile)
	st, err := loadLayerState(path, nil)
	if err != nil || len(st.Layers) != 0 {
		t.Fatalf("missing state file: %+v, %v; want empty state", st, err)
	}
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	st.Layers = []layerRecord{
		{ID: 256, UUID: "u1", Family: "@/x", Path: "@/x", Created: created, Source: "var/lib/docker/btrfs/subvolumes/abc", Image: "sha256:1", Live: true},
		{ID: 300, UUID: "u2", Family: "@/x", Path: "@/x.dockroot-tmp", Created: created},
	}
	st.Intents = []layerIntent{{Path: "@/x.dockroot-tmp", SourceUUID: "u0", Started: created}}
	if err := st.save(path); err != nil {
		t.Fatal(err)
	}
	// A crash mid-save leaves a temporary file; the next save removes it.
	stale := path + ".tmp-123"
	if err := os.WriteFile(stale, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary state file survived: %v", err)
	}
	got, err := loadLayerState(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != 2 || got.Layers[0] != st.Layers[0] || got.Layers[1] != st.Layers[1] {
		t.Errorf("round trip layers = %+v, want %+v", got.Layers, st.Layers)
	}
	if len(got.Intents) != 1 || got.Intents[0] != st.Intents[0] {
		t.Errorf("round trip intents = %+v", got.Intents)
	}
	if r := got.owner(256, "u1"); r == nil || r.Path != "@/x" {
		t.Errorf("owner(256, u1) = %+v", r)
	}
	if r := got.owner(256, "u2"); r != nil {
		t.Errorf("owner matched on ID alone: %+v", r)
	}
	got.forget(256)
	if len(got.Layers) != 1 || got.Layers[0].ID != 300 {
		t.Errorf("forget(256) left %+v", got.Layers)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 2 || entries[0].Name() != LayerStateFile || entries[1].Name() != LayerStateFile+layerStateBackupSuffix {
		t.Errorf("state directory holds %v, want only %s and its backup", entries, LayerStateFile)
	}
}

// TestLayerStateSaveAfter checks the order Commit relies on: the flush
// (a syncfs there) runs while the new content is only in the temporary
// file and layers.json still holds the old one, so the data is on disk
// before the rename; an unchanged state is not rewritten, but still
// flushed.
func TestLayerStateSaveAfter(t *testing.T) {
	path := filepath.Join(t.TempDir(), layout.StateDir, LayerStateFile)
	st, err := loadLayerState(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Layers = []layerRecord{{ID: 256, UUID: "u1", Family: "x", Path: "x"}}
	if err := st.save(path); err != nil {
		t.Fatal(err)
	}
	old := stateFileText(t, path)

	st, err = loadLayerState(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Layers[0].Live = true
	flushes := 0
	err = st.saveAfter(path, func() error {
		flushes++
		if got := stateFileText(t, path); got != old {
			t.Errorf("layers.json replaced before the flush:\n%s", got)
		}
		temps, _ := filepath.Glob(path + ".tmp-*")
		if len(temps) != 1 || !strings.Contains(stateFileText(t, temps[0]), `"live": true`) {
			t.Errorf("before the flush, temporary files %v do not hold the new state", temps)
		}
		return nil
	})
	if err != nil || flushes != 1 {
		t.Fatalf("saveAfter: %v, %d flushes", err, flushes)
	}
	if got := stateFileText(t, path); !strings.Contains(got, `"live": true`) {
		t.Errorf("layers.json after saveAfter:\n%s", got)
	}

	// Unchanged: flushed, not rewritten.
	info, _ := os.Stat(path)
	if err := st.saveAfter(path, func() error { flushes++; return nil }); err != nil || flushes != 2 {
		t.Fatalf("saveAfter unchanged: %v, %d flushes", err, flushes)
	}
	if again, _ := os.Stat(path); !os.SameFile(info, again) {
		t.Error("an unchanged state was written again")
	}

	// A failed flush leaves the old content and no temporary file.
	st.Layers[0].Live = false
	boom := errors.New("flush failed")
	if err := st.saveAfter(path, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("saveAfter with a failing flush: %v", err)
	}
	if got := stateFileText(t, path); !strings.Contains(got, `"live": true`) {
		t.Errorf("layers.json changed although the flush failed:\n%s", got)
	}
	if temps, _ := filepath.Glob(path + ".tmp-*"); len(temps) != 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

func stateFileText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLayerStateCorrupt(t *testing.T) {
	for name, content := range map[string]string{
		"empty":           "",
		"truncated":       `{"version":1,"layers":[{"id":256,"uuid":"u"`,
		"not json":        "garbage",
		"wrong version":   `{"version":2,"layers":[]}`,
		"unknown field":   `{"version":1,"layers":[],"extra":1}`,
		"trailing data":   `{"version":1,"layers":[]} {}`,
		"id below 256":    `{"version":1,"layers":[{"id":5,"uuid":"u","family":"x","path":"x"}]}`,
		"no uuid":         `{"version":1,"layers":[{"id":256,"family":"x","path":"x"}]}`,
		"duplicate id":    `{"version":1,"layers":[{"id":256,"uuid":"a","family":"x","path":"x"},{"id":256,"uuid":"b","family":"x","path":"y"}]}`,
		"layers not list": `{"version":1,"layers":{}}`,
	} {
		path := filepath.Join(t.TempDir(), LayerStateFile)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadLayerState(path, nil)
		if !errors.Is(err, ErrCorruptState) {
			t.Errorf("%s: error %v, want ErrCorruptState", name, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "restore the file") {
			t.Errorf("%s: message %q does not name the file and what to do", name, msg)
		}
	}
}

func TestNotOwnedErrorMessage(t *testing.T) {
	const state = "/top/.dockroot/layers.json"
	for _, tc := range []struct {
		err  NotOwnedError
		want []string
	}{
		{NotOwnedError{Path: "/top/@/x", What: "a plain directory", Action: "replace", Layer: "@/x", State: state},
			[]string{"cannot replace the rw layer @/x: /top/@/x is a plain directory", state, "mv /top/@/x /top/@/x.mine"}},
		{NotOwnedError{Path: "/top/@/x.prev.1", What: "subvolume 300", Action: "rotate", Layer: "@/x", State: state},
			[]string{"cannot rotate the rw layer @/x", "/top/@/x.prev.1 is subvolume 300", "mv /top/@/x.prev.1"}},
		{NotOwnedError{Path: "/top/other", What: "subvolume 300", Action: "delete", State: state},
			[]string{"refusing to delete /top/other", "did not create", state, "btrfs subvolume delete /top/other"}},
		{NotOwnedError{Path: "/top", What: "the btrfs top level", Action: "delete", State: state, Protected: true},
			[]string{"refusing to delete /top: it is the btrfs top level, which dockroot never deletes"}},
	} {
		err := error(&tc.err)
		if !errors.Is(err, ErrNotOwned) {
			t.Error("errors.Is(NotOwnedError, ErrNotOwned) is false")
		}
		for _, want := range tc.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q lacks %q", err, want)
			}
		}
		if tc.err.Protected && strings.Contains(err.Error(), "mv ") {
			t.Errorf("message %q tells the user to move something dockroot protects", err)
		}
	}
}

// A layer operation's error names the operation, the path and the cause,
// and carries no advice: the boot and the host tool each add their own.
func TestLayerOpError(t *testing.T) {
	for _, cause := range []error{unix.ENOSPC, unix.EDQUOT, unix.EROFS, unix.EIO} {
		err := layerOpError("snapshot image subvolume a to", "/top/b", cause)
		var oe *OpError
		if !errors.Is(err, cause) || !errors.As(err, &oe) || oe.Path != "/top/b" {
			t.Errorf("%v: %#v does not wrap the cause as an *OpError for /top/b", cause, err)
		}
		if want := "snapshot image subvolume a to /top/b: " + cause.Error(); err.Error() != want {
			t.Errorf("%v: %q, want %q", cause, err, want)
		}
	}
}

func TestPrevName(t *testing.T) {
	for name, want := range map[string]string{
		"docker_rwlayer":   "docker_rwlayer.prev.2",
		"@/docker_rwlayer": "@/docker_rwlayer.prev.2",
		"/@/a/b/":          "@/a/b.prev.2",
	} {
		if got := (&Layers{Name: name}).PrevName(2); got != want {
			t.Errorf("PrevName(2) of %q = %q, want %q", name, got, want)
		}
	}
}

// TestLayerStateBackup: every save that replaces the state file first
// writes the same content to layers.json.bak, and a corrupt state
// file is recovered from that backup with a warning. Both corrupt still
// refuse (ErrCorruptState).
func TestLayerStateBackup(t *testing.T) {
	path := filepath.Join(t.TempDir(), LayerStateFile)
	bak := path + layerStateBackupSuffix
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }

	st, err := loadLayerState(path, logf)
	if err != nil {
		t.Fatal(err)
	}
	first := layerRecord{ID: 256, UUID: "u1", Family: "rw", Path: "rw"}
	st.Layers = append(st.Layers, first)
	if err := st.save(path); err != nil {
		t.Fatal(err)
	}
	st.Layers = append(st.Layers, layerRecord{ID: 257, UUID: "u2", Family: "rw", Path: "rw.prev.1"})
	if err := st.save(path); err != nil {
		t.Fatal(err)
	}
	if got, want := readFileT(t, bak), readFileT(t, path); got != want {
		t.Fatalf("backup after the second save:\n%s\nwant the state file's content:\n%s", got, want)
	}

	if err := os.WriteFile(path, []byte(`{"version":1,"layers":[`), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := loadLayerState(path, logf)
	if err != nil {
		t.Fatalf("load with a corrupt state file and a good backup: %v", err)
	}
	if len(rec.Layers) != 2 || rec.owner(256, "u1") == nil || rec.owner(257, "u2") == nil {
		t.Errorf("recovered state = %+v, want what the last save wrote", rec.Layers)
	}
	if msg := strings.Join(logs, "\n"); !strings.Contains(msg, path) || !strings.Contains(msg, bak) {
		t.Errorf("no warning naming %s and %s: %q", path, bak, msg)
	}
	// The next save writes a good state file again.
	if err := rec.save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := parseLayerState([]byte(readFileT(t, path))); err != nil {
		t.Errorf("state file after saving the recovered state: %v", err)
	}
	if _, err := parseLayerState([]byte(readFileT(t, bak))); err != nil {
		t.Errorf("backup after saving the recovered state: %v", err)
	}

	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bak, []byte(`{"version":2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadLayerState(path, logf); !errors.Is(err, ErrCorruptState) || !strings.Contains(err.Error(), bak) {
		t.Errorf("both corrupt: %v, want ErrCorruptState naming the backup too", err)
	}
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPlanRotationAdopted: the adopted ancestor layer leaves the numbered
// sequence for NAME.adopted, on commit and on recovery, whatever Keep says.
func TestPlanRotationAdopted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		r      rotation
		commit bool
		want   string
	}{
		{"commit keep=0", rotation{Base: "rw", Keep: 0, Current: true, Tmp: tmpPending, TmpAdopted: true}, true,
			"exchange rw.dockroot-tmp rw; rename rw.dockroot-tmp rw.adopted"},
		{"commit keep=1 with a previous layer", rotation{Base: "rw", Keep: 1, Current: true, Prevs: []int{1}, Tmp: tmpPending, TmpAdopted: true}, true,
			"exchange rw.dockroot-tmp rw; rename rw.dockroot-tmp rw.adopted"},
		{"recovery", rotation{Base: "rw", Keep: 0, Current: true, Tmp: tmpOld, TmpAdopted: true}, false,
			"rename rw.dockroot-tmp rw.adopted"},
		{"adopted wins over a failing trial", rotation{Base: "rw", Keep: 1, Current: true, Prevs: []int{1}, Failed: true, Tmp: tmpPending, TmpAdopted: true, TmpFailed: true}, true,
			"exchange rw.dockroot-tmp rw; rename rw.dockroot-tmp rw.adopted"},
	} {
		steps, err := planRotation(tc.r, tc.commit)
		var got []string
		for _, s := range steps {
			got = append(got, s.String())
		}
		if err != nil || strings.Join(got, "; ") != tc.want {
			t.Errorf("%s: %v, %v; want %s", tc.name, got, err, tc.want)
		}
	}
}
