package bootstate

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzStateFile: Parse never panics; whatever it accepts survives a save
// and reload unchanged, and Decide on it never panics or loses the last
// good image.
func FuzzStateFile(f *testing.F) {
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"trying":{"id":"sha256:` + strings.Repeat("b", 64) + `","ref":"desk:2","attempts":2,"first":"2026-01-02T03:04:05Z","last":"2026-01-02T03:04:05Z"},` +
		`"last_good":{"id":"sha256:` + strings.Repeat("a", 64) + `","ref":"desk:1","marked":"2026-01-02T03:04:05Z"}}`))
	f.Add([]byte(`{"version":1,"fell_back":{"id":"sha256:` + strings.Repeat("c", 64) + `"}}`))
	f.Add([]byte(`{"version":1,"trying":{"id":"sha256:` + strings.Repeat("b", 64) + `","attempts":-1}}`))
	f.Add([]byte(`{"version":1}{}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(``))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", data, err)
		}
		r2, err := Parse(out)
		if err != nil {
			t.Fatalf("accepted %q, re-encoded as %q, which is refused: %v", data, out, err)
		}
		// Compared as JSON: equal instants may differ in zone or monotonic
		// reading, which the file does not keep.
		if out2, _ := json.Marshal(r2); string(out2) != string(out) {
			t.Fatalf("round trip changed the record:\n%s\n%s", out, out2)
		}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for _, tries := range []int{0, 1, 3} {
			req := Image{ID: "sha256:" + strings.Repeat("d", 64), Ref: "x"}
			if r.Trying != nil {
				req = r.Trying.Image
			}
			rec, d := Decide(*r, req, tries, now)
			if !reflect.DeepEqual(rec.LastGood, r.LastGood) {
				t.Fatalf("Decide changed the last good image: %+v -> %+v", r.LastGood, rec.LastGood)
			}
			if d.Action == FallBack && (r.LastGood == nil || d.Image != r.LastGood.Image) {
				t.Fatalf("fell back to %+v with last good %+v", d.Image, r.LastGood)
			}
		}
	})
}
