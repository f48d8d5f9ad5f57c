package commands

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/containerd"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/snapshot/stores"
	"golang.org/x/sys/unix"
)

// TestAdvise: the host tool advises in terms of its own flags, never the
// kernel parameters the init would name for the same error.
func TestAdvise(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"unknown tag", &snapshot.NotFoundError{Ref: "desk:9", Store: "s", Available: []string{"desk:1"}}, "desk:1; give one of them as the image reference"},
		{"wrong --docker-root", fmt.Errorf("resolve image x:1: %w", &snapshot.DataRootError{Path: "/nonexistent", Reason: ": no such file", Missing: true}),
			"pass --docker-root with dockerd's data root"},
		{"image in both stores", &stores.AmbiguousError{Ref: "desk:1", Stores: []string{"graphdriver", "podman"},
			Images: []*snapshot.Image{{Ref: "docker.io/library/desk:1", ID: "sha256:1"}, {Ref: "localhost/desk:1", ID: "sha256:2"}}},
			"; pass --store graphdriver or --store podman"},
		{"wrong --podman-root", fmt.Errorf("resolve image x:1: %w", &snapshot.DataRootError{Path: "/nonexistent", Reason: ": no such file", Missing: true, Kind: layout.StorePodman}),
			"; pass --podman-root with Podman's graph root (podman info -f '{{.Store.GraphRoot}}')"},
		{"platform", &containerd.PlatformError{Store: "s", Ref: "docker.io/library/desk:1", Want: "linux/amd64"},
			"docker pull --platform linux/amd64 docker.io/library/desk:1) or give an image built for linux/amd64"},
		{"not unpacked", &containerd.NotUnpackedError{Store: "s", Ref: "docker.io/library/desk:1", ChainID: "sha256:1"},
			"create a container from it once (docker create docker.io/library/desk:1, then docker rm)"},
		{"unpacked for overlayfs", &containerd.NotUnpackedError{Store: "s", Ref: "d", ChainID: "sha256:1", UnpackedFor: []string{"overlayfs"}},
			`"containerd-snapshotter": true`},
		{"damaged database", &containerd.DBError{Path: "/x/meta.db", Err: fmt.Errorf("invalid database")}, "dockroot only reads it"},
		{"locked database", &containerd.LockedError{Path: "/x/meta.db"}, "systemctl stop docker containerd"},
		{"wrong --containerd-root", &snapshot.DataRootError{Path: "/x", Reason: ": no such file", Missing: true, Kind: layout.StoreContainerd}, "pass --containerd-root"},
		{"layer name", &rwlayer.NameError{Name: ".", Reason: "names the top level, not a layer"}, "choose another --rwlayer"},
		{"full", &rwlayer.OpError{Op: "delete layer", Path: "/top/rw.prev.2", Err: unix.ENOSPC}, "the filesystem is full: free space"},
		{"read-only", &rwlayer.OpError{Op: "delete layer", Path: "/top/rw.prev.2", Err: unix.EROFS}, "remount it read-write"},
	} {
		msg := advise("install", tc.err)
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %q lacks %q", tc.name, msg, tc.want)
		}
		for _, param := range []string{"docker_image=", "docker_path=", "rootflags=", "dockroot.keep"} {
			if strings.Contains(msg, param) {
				t.Errorf("%s: %q gives kernel-parameter advice in the CLI", tc.name, msg)
			}
		}
	}
}

// The issue's own case: a wrong --docker-root says to fix --docker-root,
// once, not to set a kernel parameter, and the verb is named once.
func TestInstallWrongDockerRootAdvice(t *testing.T) {
	initBin := filepath.Join(t.TempDir(), "dockroot-init")
	os.WriteFile(initBin, []byte("\x7fELF"), 0o755)
	code, _, stderr := runCLI(nil, "install", "x:1", "--docker-root", "/nonexistent", "--boot-dir", t.TempDir(), "--init", initBin)
	if code != 1 || !strings.Contains(stderr, "--docker-root") || strings.Contains(stderr, "docker_path=") ||
		strings.Count(stderr, "install") != 1 {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
