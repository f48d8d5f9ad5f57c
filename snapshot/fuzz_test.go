package snapshot

import (
	"strings"
	"testing"
)

// Fuzz targets for everything the boot parses from disk or the cmdline in
// this package. Run one with
//
//	go test ./snapshot -run '^$' -fuzz FuzzParseRef -fuzztime 20s
//
// (or `make fuzz`); the seeds below run in every plain `go test`.

// FuzzParseRef: ParseRef never panics, and what it accepts is normalised:
// exactly one of tag and digest, and both printed forms parse back to the
// same reference.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"ubuntu", "ubuntu:22.04", "library/ubuntu", "docker.io/ubuntu", "index.docker.io/team/app:1",
		"host:5000/ns/app:1", "registry.example:5000/team/desk:1", "localhost/x", "myhost/x",
		"ubuntu@sha256:" + hex64, "ubuntu:22.04@sha256:" + hex64, "0123456789ab", hex64, "sha256:" + hex64,
		"", ":", "@", "a:", "a@", "A", "a//b", "a/", "/a", "a:b:c", "host:port/x", "[::1]:5000/x", "x:" + strings.Repeat("t", 129),
		// Regression (found by this target): a familiar name whose
		// normalised form is over Docker's 255 characters.
		strings.Repeat("0", 238), strings.Repeat("a", 237),
		"a.b_c__d---e:1", "a..b", "a__b", "a___b", "-a", "a-", "x@sha256:" + hex64[:63], "x@sha512:" + hex64 + hex64,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			if r != (Ref{}) {
				t.Fatalf("ParseRef(%q) failed (%v) but returned %+v", s, err, r)
			}
			return
		}
		if r.Domain == "" || r.Path == "" || (r.Tag == "") == (r.Digest == "") {
			t.Fatalf("ParseRef(%q) = %+v: want a domain, a path and exactly one of tag and digest", s, r)
		}
		for _, again := range []string{r.String(), r.Familiar()} {
			r2, err := ParseRef(again)
			if err != nil || r2 != r {
				t.Fatalf("ParseRef(%q) = %+v; its form %q parses to %+v, %v", s, r, again, r2, err)
			}
		}
		// repositories.json keys are familiar names: the store relies on
		// them naming the same repository.
		if n, err := ParseRef(r.FamiliarName()); err != nil || n.Name() != r.Name() {
			t.Fatalf("ParseRef(%q): familiar name %q parses to %+v, %v", s, r.FamiliarName(), n, err)
		}
	})
}
