package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path"
	"strings"
	"testing"
	"testing/fstest"
	"time"
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

// FuzzGraphDriverStore feeds arbitrary repositories.json, image config and
// cache-id contents to the graph-driver store through an in-memory data
// root (fstest.MapFS: this fuzzes the parsers, not Docker's format, which
// graphdriver_root_test.go proves against a real dockerd). The config is
// stored under its real sha256, so the fuzzer gets past the digest check
// into chain-ID and cache-id handling.
//
// Invariants: no panic; errors are errors, never half-filled images; a
// resolved image is the config's ID, and its subvolume is exactly
// <docker path>/btrfs/subvolumes/<one path element>, whatever cache-id
// holds (a cache-id such as "../../etc" must never point outside).
func FuzzGraphDriverStore(f *testing.F) {
	diff := "sha256:" + hex64
	cfg := `{"created":"2026-01-02T03:04:05Z","rootfs":{"type":"layers","diff_ids":["` + diff + `"]}}`
	for _, seed := range []struct{ repos, config, cacheID, ref string }{
		{`{"Repositories":{"desk":{"desk:1":"ID"}}}`, cfg, "abc123\n", "desk:1"},
		{`{"Repositories":{"desk":{"desk:1":"ID","docker.io/library/desk:2":"ID"}}}`, cfg, "abc123", "docker.io/library/desk:2"},
		{`{"Repositories":{"registry.example:5000/team/desk":{"registry.example:5000/team/desk:1":"ID"}}}`, cfg, "c", "registry.example:5000/team/desk:1"},
		{`{"Repositories":{"desk":{"desk@sha256:` + hex64 + `":"ID"}}}`, cfg, "c", "desk@sha256:" + hex64},
		{`{"Repositories":{"desk":{"desk:1":"ID"}}}`, cfg, "../../../etc", "desk:1"},
		{`{"Repositories":{"desk":{"desk:1":"ID"}}}`, cfg, "a/b", "desk:1"},
		{`{"Repositories":{"desk":{"desk:1":"ID"}}}`, cfg, "..", "ID"},
		{`{"Repositories":{"desk":{"desk:1":"ID"}}}`, `{"rootfs":{"type":"layers","diff_ids":[]}}`, "c", "desk:1"},
		{`{"Repositories":{"desk":{"desk:1":"ID"}}}`, `{"rootfs":{"type":"layers","diff_ids":["` + diff + `","` + diff + `"]}}`, "c", "desk:1"},
		{`{"Repositories":{"x":{"UPPER:1":"ID"}}}`, cfg, "c", "x"},
		{`{"Repositories":{"desk":{"desk:1":"sha256:abc"}}}`, cfg, "c", "desk:1"},
		{`{"Repositories":{"desk":{"desk:1":"ID"`, cfg, "c", "desk:1"},
		{``, ``, ``, ``},
		{`null`, `null`, "c", "0123456789ab"},
		{`{"Repositories":null}`, `{"rootfs":null}`, "c", "sha256:" + hex64},
	} {
		f.Add(seed.repos, seed.config, seed.cacheID, seed.ref)
	}
	const dockerPath = "var/lib/docker"
	f.Fuzz(func(t *testing.T, repos, config, cacheID, ref string) {
		sum := sha256.Sum256([]byte(config))
		id := "sha256:" + hex.EncodeToString(sum[:])
		// "ID" in the seeds stands for the config's real ID.
		repos = strings.ReplaceAll(repos, `"ID"`, `"`+id+`"`)
		if ref == "ID" {
			ref = id
		}
		fsys := fstest.MapFS{
			reposFile:                              {Data: []byte(repos)},
			imagedbDir + "/" + id[len("sha256:"):]: {Data: []byte(config)},
		}
		var c imageConfig
		if json.Unmarshal([]byte(config), &c) == nil {
			if chain, err := ChainID(c.RootFS.DiffIDs); err == nil {
				fsys[layerdbDir+"/"+chain[len("sha256:"):]+"/cache-id"] = &fstest.MapFile{Data: []byte(cacheID)}
				name := strings.TrimSpace(cacheID)
				if sub := path.Clean(subvolumeDir + "/" + name); strings.HasPrefix(sub, subvolumeDir+"/") {
					fsys[sub+"/etc/hostname"] = &fstest.MapFile{Data: []byte("x")}
				}
			}
		}
		s := NewGraphDriverStoreFS(fsys, dockerPath, "/top/"+dockerPath)
		for _, r := range []string{ref, id} {
			img, err := s.Resolve(r)
			if err != nil {
				if img != nil {
					t.Fatalf("Resolve(%q) = %+v with error %v", r, img, err)
				}
				continue
			}
			checkResolved(t, img, id, dockerPath)
		}
		list, err := s.List()
		if err != nil {
			return
		}
		for i := range list {
			if list[i].Problem == "" {
				checkResolved(t, &list[i], id, dockerPath)
			}
		}
	})
}

func checkResolved(t *testing.T, img *Image, id, dockerPath string) {
	t.Helper()
	if img.ID != id {
		t.Fatalf("resolved %q to %s, but the only image config is %s", img.Ref, img.ID, id)
	}
	dir, name := path.Split(img.Subvolume)
	if dir != dockerPath+"/"+subvolumeDir+"/" || name == "" || name == "." || name == ".." {
		t.Fatalf("resolved %q to subvolume %q, outside %s/%s", img.Ref, img.Subvolume, dockerPath, subvolumeDir)
	}
	if len(img.DiffIDs) == 0 || img.ChainID == "" {
		t.Fatalf("resolved %q without layers: %+v", img.Ref, img)
	}
}

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
		back, err := loadLayerState(p)
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
