package graphdriver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/dockroot/dockroot/snapshot"
)

// Fuzz targets for everything the boot parses from disk or the cmdline in
// this package. Run one with
//
//	go test ./snapshot/graphdriver -run '^$' -fuzz FuzzGraphDriverStore -fuzztime 20s
//
// (or `make fuzz`); the seeds below run in every plain `go test`.

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
			if chain, err := snapshot.ChainID(c.RootFS.DiffIDs); err == nil {
				fsys[layerdbDir+"/"+chain[len("sha256:"):]+"/cache-id"] = &fstest.MapFile{Data: []byte(cacheID)}
				name := strings.TrimSpace(cacheID)
				if sub := path.Clean(subvolumeDir + "/" + name); strings.HasPrefix(sub, subvolumeDir+"/") {
					fsys[sub+"/etc/hostname"] = &fstest.MapFile{Data: []byte("x")}
				}
			}
		}
		s := NewFS(fsys, dockerPath, "/top/"+dockerPath)
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

func checkResolved(t *testing.T, img *snapshot.Image, id, dockerPath string) {
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
