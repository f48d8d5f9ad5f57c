package commands

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The CLI prints "dockroot VERB: " once; the verb's own error must not
// name the verb again ("dockroot install: install nosuch:1: …").
func TestRuntimeErrorNamesVerbOnce(t *testing.T) {
	dir := t.TempDir()
	boot, docker := filepath.Join(dir, "boot"), filepath.Join(dir, "docker")
	for _, d := range []string{boot, docker} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	init := filepath.Join(dir, "init")
	if err := os.WriteFile(init, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		verb string
		args []string
		want string // the start of the printed line
	}{
		{"install", []string{"nosuch:1", "--boot-dir", boot, "--docker-root", docker, "--init", init}, "dockroot install: resolve image nosuch:1: "},
		{"gc", []string{"--top", dir, "--rwlayer", "rw", "--boot-json", filepath.Join(dir, "none.json")}, "dockroot gc: "},
		{"images", []string{"--docker-root", filepath.Join(dir, "nope")}, "dockroot images: "},
		{"status", []string{"--boot-json", filepath.Join(dir, "none.json")}, "dockroot status: "},
		{"retry", []string{"--boot-json", filepath.Join(dir, "none.json")}, "dockroot retry: "},
		{"initramfs", []string{"-o", filepath.Join(dir, "img"), "--root", dir, "--init", init}, "dockroot initramfs: "},
	} {
		code, _, stderr := drive(append([]string{tc.verb}, tc.args...)...)
		if code != 1 || !strings.HasPrefix(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d %q; want exit 1 and one line starting %q", tc.verb, code, stderr, tc.want)
		}
		if n := strings.Count(stderr, tc.verb); n != 1 {
			t.Errorf("%s: the verb's name appears %d times, want once: %q", tc.verb, n, stderr)
		}
	}
}
