package hook

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/containerd"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/snapshot/stores"
	"golang.org/x/sys/unix"
)

// TestAdvise: each library error gets its kernel-parameter advice once, at
// the init's boundary, and keeps its cause for errors.Is and errors.As.
func TestAdvise(t *testing.T) {
	op := func(cause error) error {
		return fmt.Errorf("create the rw layer: %w", &rwlayer.OpError{Op: "snapshot image subvolume x to", Path: "/top/rw.dockroot-tmp", Err: cause})
	}
	for _, tc := range []struct {
		name string
		err  error
		want string // "" = no advice
		not  string // must not appear
	}{
		{"unknown tag lists the tags", &snapshot.NotFoundError{Ref: "desk:9", Store: "s", Available: []string{"desk:1"}},
			"desk:1; set docker_image= to one of them", "--"},
		{"empty store", &snapshot.NotFoundError{Ref: "desk:9", Store: "s"}, "set docker_path= to the data root that holds it", ""},
		{"wrong docker_path", &snapshot.DataRootError{Path: "/top/x", Reason: ": no such file", Missing: true},
			"; set docker_path= to Docker's data root (default var/lib/docker), relative to the btrfs top level", "--docker-root"},
		{"overlay store: Docker's own fix, no docker_path", &snapshot.DataRootError{Path: "/top/x", Reason: " uses the overlay2 storage driver", Err: snapshot.ErrUnsupportedStore},
			"", "docker_path="},
		{"store file", &snapshot.StoreFileError{Path: "/top/x/repositories.json", Reason: "is a fifo, not a regular file"}, "put back the file it wrote", "--"},
		{"in two stores", &stores.AmbiguousError{Ref: "desk:1", Stores: []string{"graphdriver", "podman"}, Images: []*snapshot.Image{{}, {}}},
			"set dockroot.store= to the one to boot from (graphdriver or podman)", ""},
		{"wrong podman_path", &snapshot.DataRootError{Kind: "podman", Path: "/top/p", Reason: ": no such file", Missing: true},
			"; set podman_path= to rootful Podman's graph root (default var/lib/containers/storage)", "docker_path="},
		{"auto found no store at either path", errors.Join(&snapshot.DataRootError{Path: "/top/d", Reason: ": no such file", Missing: true},
			&snapshot.DataRootError{Kind: "podman", Path: "/top/p", Reason: ": no such file", Missing: true}),
			"set docker_path= to Docker's data root (default var/lib/docker), or podman_path= to rootful Podman's graph root", ""},
		{"store kind", &stores.UnknownKindError{Kind: "podman"}, "set dockroot.store= to one of auto, graphdriver", ""},
		{"layer name", &rwlayer.NameError{Name: "x.prev.1", Reason: "is one of dockroot's rotation names"}, "choose another rootflags=subvol= name", ""},
		{"not ours to replace", &rwlayer.NotOwnedError{Path: "/top/rw", What: "a plain directory", Action: "replace", Layer: "rw"},
			"(mv /top/rw /top/rw.mine) or choose another rootflags=subvol= name", ""},
		{"not ours to delete: no name advice", &rwlayer.NotOwnedError{Path: "/top/x", What: "subvolume 300", Action: "delete"}, "", "rootflags"},
		{"ENOSPC, once", op(unix.ENOSPC), "no space left on device\nthe filesystem is full: what this boot created was removed", ""},
		{"EDQUOT", op(unix.EDQUOT), "the filesystem is full", ""},
		{"low space", &freespace.LowSpaceError{Path: "/top", Need: 64 << 20}, "nothing was changed. Free space, then boot again", ""},
		{"read-only layer operation", op(unix.EROFS), "the filesystem is read-only", ""},
		{"platform", &containerd.PlatformError{Store: "s", Ref: "docker.io/library/desk:1", Want: "linux/amd64", Have: []string{"linux/arm64"}},
			"docker pull --platform linux/amd64 docker.io/library/desk:1) or set docker_image= to an image built for linux/amd64", "--docker-root"},
		{"not unpacked", &containerd.NotUnpackedError{Store: "s", Ref: "docker.io/library/desk:1", ChainID: "sha256:1"},
			"create a container from it once (docker create docker.io/library/desk:1)", ""},
		{"unpacked for overlayfs", &containerd.NotUnpackedError{Store: "s", Ref: "d", ChainID: "sha256:1", UnpackedFor: []string{"overlayfs"}},
			`"containerd-snapshotter": true`, ""},
		{"damaged database", &containerd.DBError{Path: "/top/meta.db", Err: errors.New("invalid database")}, "dockroot only reads it", "put back the file"},
		{"missing blob", &containerd.BlobError{Store: "s", Ref: "docker.io/library/desk:1", Missing: true}, "docker pull docker.io/library/desk:1", ""},
		{"wrong containerd_path", &snapshot.DataRootError{Kind: "containerd", Path: "/top/c", Reason: ": no such file", Missing: true},
			"; set containerd_path= to a system containerd's root (default var/lib/containerd", ""},
		{"anything else", errors.New("boom"), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := advise(tc.err)
			if !errors.Is(got, tc.err) {
				t.Errorf("advise lost the cause: %v", got)
			}
			msg := got.Error()
			if tc.want == "" && msg != tc.err.Error() {
				t.Errorf("advise added %q to %q", strings.TrimPrefix(msg, tc.err.Error()), tc.err)
			}
			if tc.want != "" && !strings.Contains(msg, tc.want) {
				t.Errorf("%q lacks %q", msg, tc.want)
			}
			if tc.not != "" && strings.Contains(msg, tc.not) {
				t.Errorf("%q gives advice for another boundary (%q)", msg, tc.not)
			}
			if n := strings.Count(msg, "Free space, then boot again"); n > 1 {
				t.Errorf("the free-space advice is given %d times: %q", n, msg)
			}
		})
	}
}
