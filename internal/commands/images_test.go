package commands

import (
	"os"
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

// checkDaemon refuses what would mix two stores.
func TestCheckDaemon(t *testing.T) {
	root := t.TempDir()
	link := filepath.Join(t.TempDir(), "docker")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, driver, daemonRoot, want string
	}{
		{"same root", "btrfs", root, ""},
		{"same root through a link", "btrfs", link, ""},
		{"overlay2", "overlay2", root, "uses the overlay2 storage driver"},
		{"another root", "btrfs", t.TempDir(), "pass --docker-root"},
		{"missing root", "btrfs", filepath.Join(root, "nope"), "pass --docker-root"},
	} {
		err := checkDaemon("unix:///x.sock", c.driver, c.daemonRoot, root)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}
