package update

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/jsonstream"
)

func TestStateStageAndWrite(t *testing.T) {
	dir := t.TempDir()
	s, err := ReadState(dir)
	if err != nil || len(s.Staged) != 0 {
		t.Fatalf("ReadState of an empty boot dir = %+v, %v; want empty", s, err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Stage(Staged{Ref: "desk:stable", ImageID: "sha256:a", Time: now})
	s.Stage(Staged{Ref: "desk:testing", ImageID: "sha256:b", Time: now})
	s.Stage(Staged{Ref: "desk:stable", ImageID: "sha256:c", Previous: "sha256:a", Time: now})
	if err := s.Write(dir); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Staged) != 2 || got.Staged[0].ImageID != "sha256:c" || got.Staged[0].Previous != "sha256:a" || got.Staged[1].Ref != "desk:testing" {
		t.Errorf("state after staging desk:stable twice = %+v", got.Staged)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 1 || filepath.Base(names[0]) != StateFile {
		t.Errorf("Write left other files than %s: %v", StateFile, names)
	}
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"schema": 9}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadState(dir); err == nil || !strings.Contains(err.Error(), "schema 9") {
		t.Errorf("ReadState of schema 9 = %v, want an error naming it", err)
	}
}

func TestRefNames(t *testing.T) {
	for _, tc := range []struct{ in, full, familiar string }{
		{"desk", "docker.io/library/desk:latest", "desk:latest"},
		{"desk:stable", "docker.io/library/desk:stable", "desk:stable"},
		{"me/desk:1", "docker.io/me/desk:1", "me/desk:1"},
		{"127.0.0.1:5000/fleet/desk:stable", "127.0.0.1:5000/fleet/desk:stable", "127.0.0.1:5000/fleet/desk:stable"},
	} {
		if got := fullRef(tc.in); got != tc.full {
			t.Errorf("fullRef(%q) = %q, want %q", tc.in, got, tc.full)
		}
		if got := familiar(fullRef(tc.in)); got != tc.familiar {
			t.Errorf("familiar(fullRef(%q)) = %q, want %q", tc.in, got, tc.familiar)
		}
	}
	if got := keepName(RoleLastGood, "sha256:0123456789abcdef0123"); got != "last-good-0123456789ab" {
		t.Errorf("keepName = %q", got)
	}
}

// The plain progress is one line per layer step, without the byte counts
// that would flood a journal; the terminal one rewrites one line.
func TestProgress(t *testing.T) {
	msgs := []jsonstream.Message{
		{Status: "Pulling from fleet/desk", ID: "stable"},
		{Status: "Pulling fs layer", ID: "aaa"},
		{Status: "Downloading", ID: "aaa", Progress: &jsonstream.Progress{Current: 5e6, Total: 1e7}},
		{Status: "Download complete", ID: "aaa"},
		{Status: "Extracting", ID: "aaa"},
		{Status: "Pull complete", ID: "aaa"},
		{Status: "Digest: sha256:1"},
	}
	var plain bytes.Buffer
	p := newProgress(&plain, "desk:stable", false)
	for _, m := range msgs {
		p.add(m)
	}
	p.done()
	want := "desk:stable: stable: Pulling from fleet/desk\ndesk:stable: aaa: Pulling fs layer\ndesk:stable: aaa: Download complete\ndesk:stable: aaa: Pull complete\ndesk:stable: Digest: sha256:1\n"
	if plain.String() != want {
		t.Errorf("plain progress:\n%s\nwant:\n%s", plain.String(), want)
	}
	var term bytes.Buffer
	p = newProgress(&term, "desk:stable", true)
	for _, m := range msgs {
		p.add(m)
	}
	p.done()
	out := term.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "pulling desk:stable: 1/1 layers, 5.0/10.0 MB\n") {
		t.Errorf("terminal progress = %q", out)
	}
}
