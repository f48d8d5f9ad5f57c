package commands

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/images"
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

// The --store and --podman-root table, on temporary directories: the
// host's own Podman store is never read.
func TestImagesStoreFlags(t *testing.T) {
	docker, podman := t.TempDir(), t.TempDir() // neither holds a store
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"podman with an empty graph root", []string{"--store", "podman"}, 1, "pass --podman-root with Podman's graph root"},
		{"auto with neither store", []string{"--store", "auto"}, 1, "pass --docker-root"},
		{"unknown store", []string{"--store", "lvm"}, 2, `--store "lvm": want auto, graphdriver, containerd or podman`},
		{"the API is dockerd's", []string{"--store", "podman", "--source", "api"}, 2, "--source api reads Docker's classic store"},
		{"the API is not containerd's", []string{"--store", "containerd", "--source", "api"}, 2, "it does not go with --store containerd"},
		{"relative containerd root", []string{"--containerd-root", "var/lib/containerd"}, 2, `--containerd-root "var/lib/containerd": give an absolute path`},
		{"relative --podman-root", []string{"--podman-root", "var/lib/containers"}, 2, "--podman-root"},
	} {
		args := append([]string{"images", "--docker-root", docker}, c.args...)
		if !strings.Contains(strings.Join(c.args, " "), "--podman-root") {
			args = append(args, "--podman-root", podman)
		}
		code, _, stderr := drive(args...)
		if code != c.code || !strings.Contains(stderr, c.stderr) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", c.name, code, stderr, c.code, c.stderr)
		}
	}
}

// The STORE column shows only when a row has a store: with Docker's store
// alone the table is as it always was.
func TestPrintImagesStore(t *testing.T) {
	for _, c := range []struct {
		rows   []images.Row
		header string
	}{
		{[]images.Row{{Ref: "desk:1", ID: "sha256:0123456789abcdef"}}, "REF     IMAGE ID      CREATED  KERNEL  NOTE"},
		{[]images.Row{{Ref: "desk:1", ID: "sha256:0123456789abcdef", Store: "podman"}}, "REF     STORE   IMAGE ID      CREATED  KERNEL  NOTE"},
	} {
		var b strings.Builder
		if err := printImages(&b, c.rows); err != nil {
			t.Fatal(err)
		}
		if got := strings.SplitN(b.String(), "\n", 2)[0]; strings.TrimRight(got, " ") != c.header {
			t.Errorf("header %q, want %q", got, c.header)
		}
	}
}
