package commands

import (
	"path/filepath"
	"strings"
	"testing"
)

// The --source table: each value and its misuse, without a daemon.
func TestImagesSource(t *testing.T) {
	root := t.TempDir() // an empty data root: no image store
	noDaemon := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"auto reads the files", []string{"--source", "auto"}, 1, root},
		{"files reads the files", []string{"--source", "files"}, 1, root},
		{"api asks the daemon", []string{"--source", "api", "--host", noDaemon}, 1, "use --source files"},
		{"--host without --source api", []string{"--host", noDaemon}, 2, "--host is for --source api"},
		{"unknown source", []string{"--source", "daemon"}, 2, `--source "daemon": want auto, files or api`},
	} {
		code, _, stderr := drive(append([]string{"images", "--docker-root", root}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.stderr) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", c.name, code, stderr, c.code, c.stderr)
		}
		if code == 1 && strings.Contains(stderr, "Usage:") {
			t.Errorf("%s: a runtime error printed usage: %s", c.name, stderr)
		}
	}
}
