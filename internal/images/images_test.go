package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
