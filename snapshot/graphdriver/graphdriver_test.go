package graphdriver

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/dockroot/dockroot/snapshot"
)

// These tests cover only the parsers' handling of malformed input. What a
// real dockerd writes, and that resolution follows it, is proven against a
// private dockerd in graphdriver_root_test.go.

func TestParseRepositoriesErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"truncated", `{"Repositories":{"desk":{"desk:1":"sha256:` + hex64[:10], "invalid JSON"},
		{"empty file", ``, "invalid JSON"},
		{"not an object", `[1,2]`, "invalid JSON"},
		{"bad reference key", `{"Repositories":{"x":{"UPPER:1":"sha256:` + hex64 + `"}}}`, `reference "UPPER:1"`},
		{"bad image id", `{"Repositories":{"x":{"x:1":"sha256:abc"}}}`, `image ID "sha256:abc"`},
		{"id without algorithm", `{"Repositories":{"x":{"x:1":"` + hex64 + `"}}}`, "is not sha256:<64 hex>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseRepositories([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, snapshot.ErrCorrupt) {
				t.Fatalf("parseRepositories(%q) = %v; want snapshot.ErrCorrupt containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestParseRepositoriesNormalises(t *testing.T) {
	id := "sha256:" + hex64
	// Familiar and full keys name the same reference.
	idx, err := parseRepositories([]byte(`{"Repositories":{"desk":{"desk:1":"` + id + `","docker.io/library/desk:2":"` + id + `"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"docker.io/library/desk:1", "docker.io/library/desk:2"} {
		if idx.byRef[k] != id {
			t.Errorf("byRef[%q] = %q, want %q", k, idx.byRef[k], id)
		}
	}
	if got := snapshot.FamiliarTags(idx.byID[id]); strings.Join(got, ",") != "desk:1,desk:2" {
		t.Errorf("tags of %s = %v, want [desk:1 desk:2]", id, got)
	}
}

func TestParseImageConfigErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"truncated", `{"rootfs":{"type":"layers","diff_ids":["sha256:`, "invalid JSON"},
		{"no rootfs", `{}`, `rootfs.type is ""`},
		{"wrong rootfs type", `{"rootfs":{"type":"tarball"}}`, `rootfs.type is "tarball"`},
		{"bad diff id", `{"rootfs":{"type":"layers","diff_ids":["sha256:xyz"]}}`, "rootfs.diff_ids"},
		{"bad created", `{"created":"yesterday","rootfs":{"type":"layers"}}`, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseImageConfig([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, snapshot.ErrCorrupt) {
				t.Fatalf("parseImageConfig(%q) = %v; want snapshot.ErrCorrupt containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestVerifyConfig(t *testing.T) {
	// sha256("") is the well-known empty digest.
	empty := "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if err := verifyConfig(empty, nil); err != nil {
		t.Errorf("verifyConfig(empty digest, empty data) = %v", err)
	}
	if err := verifyConfig(empty, []byte("x")); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Errorf("verifyConfig(mismatch) = %v, want snapshot.ErrCorrupt", err)
	}
}

// hex64 is a valid digest hex for seeds and fixtures.
const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestDetectStore(t *testing.T) {
	dir := &fstest.MapFile{Mode: fs.ModeDir | 0o755}
	tests := []struct {
		name  string
		fsys  fstest.MapFS
		want  []string
		isErr error
	}{
		{"overlay2 store", fstest.MapFS{"image/overlay2": dir, "overlay2": dir},
			[]string{"overlay2 storage driver", `{"storage-driver": "btrfs"}`, "daemon.json"}, snapshot.ErrUnsupportedStore},
		{"containerd image store", fstest.MapFS{"containerd": dir},
			[]string{"containerd image store", "dockroot.store=containerd", `{"storage-driver": "btrfs"}`}, snapshot.ErrUnsupportedStore},
		{"empty data root", fstest.MapFS{"tmp": dir},
			[]string{"has no " + "/dr/image/btrfs", "never run there"}, snapshot.ErrUnsupportedStore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Detect(tt.fsys, "/dr")
			var dre *snapshot.DataRootError
			if !errors.As(err, &dre) || dre.Path != "/dr" || dre.Missing != (tt.name == "empty data root") {
				t.Errorf("Detect = %#v, want a *snapshot.DataRootError for /dr, Missing only when empty", err)
			}
			if !errors.Is(err, tt.isErr) {
				t.Fatalf("detectGraphDriver = %v, want %v", err, tt.isErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestAmbiguousIDPrefix(t *testing.T) {
	a := "abcdef012345" + hex64[12:]
	b := "abcdef012345" + strings.Repeat("9", 52)
	fsys := fstest.MapFS{
		imagedbDir + "/" + a: {Data: []byte("{}")},
		imagedbDir + "/" + b: {Data: []byte("{}")},
		reposFile:            {Data: []byte(`{"Repositories":{"x":{"x:1":"sha256:` + a + `"}}}`)},
	}
	s := NewFS(fsys, "var/lib/docker", "/dr")
	_, err := s.Resolve("abcdef012345")
	if err == nil {
		t.Fatal("Resolve(ambiguous prefix) succeeded")
	}
	for _, w := range []string{"ambiguous", "sha256:" + a + " (x:1)", "sha256:" + b, "more digits"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	// Too short to be a prefix: a name lookup only, with a hint.
	_, err = s.Resolve("abcdef")
	if !errors.Is(err, snapshot.ErrNotFound) || !strings.Contains(err.Error(), "at least 12 hex digits") {
		t.Errorf("Resolve(short prefix) = %v, want not found with the 12-digit hint", err)
	}
}
