package rwlayer

import (
	"encoding/json"
	"testing"
	"time"
)

// Fuzz targets for everything the boot parses from disk or the cmdline in
// this package. Run one with
//
//	go test ./snapshot/rwlayer -run '^$' -fuzz FuzzLayerState -fuzztime 20s
//
// (or `make fuzz`); the seeds below run in every plain `go test`.

// FuzzLayerState: the ownership record's parser never panics, never
// accepts a record the lifecycle could misuse (a subvolume ID below 256,
// which includes the top level, or one listed twice), and what it accepts
// survives a save and reload unchanged.
func FuzzLayerState(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	good := &layerState{Version: layerStateVer, Layers: []layerRecord{
		{ID: 256, UUID: "u1", Family: "rw", Path: "rw", Created: now, Source: "var/lib/docker/btrfs/subvolumes/x", Live: true},
		{ID: 300, UUID: "u2", Family: "rw", Path: "rw.prev.1", Created: now, Source: AdoptedSource},
	}, Intents: []layerIntent{{Path: "rw.dockroot-tmp", SourceUUID: "u0", Started: now}}}
	b, _ := json.Marshal(good)
	f.Add(b)
	for _, s := range []string{
		`{"version":1,"layers":[]}`,
		`{"version":1,"layers":[{"id":5,"uuid":"u","family":"rw","path":"rw"}]}`,
		`{"version":1,"layers":[{"id":256,"uuid":"u","family":"rw","path":"rw"},{"id":256,"uuid":"v","family":"rw","path":"x"}]}`,
		`{"version":1,"layers":[{"id":256,"uuid":"","family":"rw","path":"rw"}]}`,
		`{"version":2}`, `{"version":1,"extra":1}`, `{"version":1}{"version":1}`, `null`, ``, `{"version":1,"layers":[{"id":-1}]}`,
		`{"version":1,"layers":[{"id":18446744073709551615,"uuid":"u","family":"f","path":"p","created":"bad"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseLayerState(data)
		if err != nil {
			if st != nil {
				t.Fatalf("parseLayerState failed (%v) but returned %+v", err, st)
			}
			return
		}
		seen := map[uint64]bool{}
		for _, r := range st.Layers {
			if r.ID < 256 || seen[r.ID] {
				t.Fatalf("accepted a record the lifecycle must never act on: %+v in %q", r, data)
			}
			seen[r.ID] = true
		}
		dir := t.TempDir()
		p := dir + "/" + LayerStateFile
		if err := st.save(p); err != nil {
			t.Fatalf("save of an accepted state: %v", err)
		}
		back, err := loadLayerState(p, nil)
		if err != nil {
			t.Fatalf("accepted %q, but its saved form is refused: %v", data, err)
		}
		a, _ := json.Marshal(st)
		b, _ := json.Marshal(back)
		if string(a) != string(b) {
			t.Fatalf("save and reload changed the state:\n%s\n%s", a, b)
		}
	})
}
