package gc

import (
	"slices"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
)

func TestPlanLayers(t *testing.T) {
	layers := []rwlayer.LayerInfo{
		{Name: "@/rw", Path: "/t/@/rw", Index: 0, SubvolID: 300, Owned: true},
		{Name: "@/rw.prev.1", Path: "/t/@/rw.prev.1", Index: 1, SubvolID: 290, Owned: true},
		{Name: "@/rw.prev.2", Path: "/t/@/rw.prev.2", Index: 2, SubvolID: 280, Owned: true},
		{Name: "@/rw.prev.3", Path: "/t/@/rw.prev.3", Index: 3, SubvolID: 270, Owned: false},
		{Name: "@/rw.prev.4", Path: "/t/@/rw.prev.4", Index: 4, SubvolID: 260, Owned: true},
		{Name: "@/rw.prev.5", Path: "/t/@/rw.prev.5", Index: 5, SubvolID: 259, Owned: true},
		{Name: "@/rw.adopted", Path: "/t/@/rw.adopted", Index: rwlayer.IndexAdopted, SubvolID: 258, Owned: true, Adopted: true},
	}
	tmp := func(live, owned bool) rwlayer.LayerInfo {
		return rwlayer.LayerInfo{Name: "@/rw.dockroot-tmp", Path: "/t/@/rw.dockroot-tmp", Index: rwlayer.IndexTmp, SubvolID: 310, Owned: owned, Tmp: true, Live: live}
	}
	failed := func(owned bool) rwlayer.LayerInfo {
		return rwlayer.LayerInfo{Name: "@/rw.failed", Path: "/t/@/rw.failed", Index: rwlayer.IndexFailed, SubvolID: 305, Owned: owned, Failed: true,
			Image: "sha256:" + strings.Repeat("b", 64)}
	}
	rootIs := func(p string) func(string) bool { return func(s string) bool { return s == p } }
	for _, tc := range []struct {
		name    string
		keep    int
		adopted bool
		extra   []rwlayer.LayerInfo
		booted  *Booted
		isRoot  func(string) bool
		del     string // names deleted, space-separated
	}{
		{"keep 1", 1, false, nil, nil, rootIs(""), "@/rw.prev.2 @/rw.prev.4 @/rw.prev.5"},
		{"keep 0", 0, false, nil, nil, rootIs(""), "@/rw.prev.1 @/rw.prev.2 @/rw.prev.4 @/rw.prev.5"},
		{"keep 9", 9, false, nil, nil, rootIs(""), ""},
		{"booted by name", 0, false, nil, &Booted{Subvolume: "@/rw.prev.2"}, rootIs(""), "@/rw.prev.1 @/rw.prev.4 @/rw.prev.5"},
		{"booted by id", 0, false, nil, &Booted{Subvolume: "elsewhere", SubvolID: 260}, rootIs(""), "@/rw.prev.1 @/rw.prev.2 @/rw.prev.5"},
		{"mounted as /", 0, false, nil, nil, rootIs("/t/@/rw.prev.5"), "@/rw.prev.1 @/rw.prev.2 @/rw.prev.4"},
		{"--adopted", 9, true, nil, nil, rootIs(""), "@/rw.adopted"},
		{"adopted and booted", 9, true, nil, &Booted{Subvolume: "@/rw.adopted"}, rootIs(""), ""},
		// Issue 17 item 13: an unfinished layer is listed, and goes only
		// when dockroot made it and the last boot did not commit it.
		{"unfinished layer", 9, false, []rwlayer.LayerInfo{tmp(false, true)}, nil, rootIs(""), "@/rw.dockroot-tmp"},
		{"displaced live layer", 9, false, []rwlayer.LayerInfo{tmp(true, true)}, nil, rootIs(""), ""},
		{"someone else's tmp", 9, false, []rwlayer.LayerInfo{tmp(false, false)}, nil, rootIs(""), ""},
		// Issue 17 item 10: the failed trial's layer (NAME.failed) goes,
		// whatever --keep says, unless it is the one running.
		{"failed trial's layer", 9, false, []rwlayer.LayerInfo{failed(true)}, nil, rootIs(""), "@/rw.failed"},
		{"failed trial's layer, keep 0", 0, false, []rwlayer.LayerInfo{failed(true)}, nil, rootIs(""),
			"@/rw.prev.1 @/rw.prev.2 @/rw.prev.4 @/rw.prev.5 @/rw.failed"},
		{"failed trial's layer booted", 9, false, []rwlayer.LayerInfo{failed(true)}, &Booted{Subvolume: "@/rw.failed"}, rootIs(""), ""},
		{"failed trial's layer mounted as /", 9, false, []rwlayer.LayerInfo{failed(true)}, nil, rootIs("/t/@/rw.failed"), ""},
		{"someone else's subvolume under NAME.failed", 9, false, []rwlayer.LayerInfo{failed(false)}, nil, rootIs(""), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var del []string
			plan := PlanLayers(append(slices.Clone(layers), tc.extra...), tc.keep, tc.adopted, tc.booted, tc.isRoot)
			if len(plan) != len(layers)+len(tc.extra) {
				t.Errorf("the plan lists %d layers, want every one of %d", len(plan), len(layers)+len(tc.extra))
			}
			for _, p := range plan {
				if p.Delete {
					del = append(del, p.Layer.Name)
				}
				if p.Layer.Index == 0 && p.Delete || !p.Layer.Owned && p.Delete {
					t.Errorf("plans to delete %+v", p.Layer)
				}
			}
			if got := strings.Join(del, " "); got != tc.del {
				t.Errorf("deletes %q, want %q", got, tc.del)
			}
			for _, p := range plan {
				if p.Layer.Failed && p.Delete && !strings.Contains(p.Why, "never marked good") {
					t.Errorf("%s: reason %q does not say it is a failed trial's layer", p.Layer.Name, p.Why)
				}
			}
		})
	}
}

// Each store's subvolumes are told apart by path, Docker's managed
// containerd (inside the data root) before Docker's classic store.
func TestStoreOf(t *testing.T) {
	paths := StorePaths{Docker: "var/lib/docker", Containerd: "var/lib/containerd", Podman: "var/lib/containers/storage"}
	for subvol, want := range map[string]string{
		"var/lib/docker/btrfs/subvolumes/abc":                                             layout.StoreGraphDriver,
		"/var/lib/docker/btrfs/subvolumes/abc":                                            layout.StoreGraphDriver,
		"var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.btrfs/snapshots/7": layout.StoreContainerd,
		"var/lib/containerd/io.containerd.snapshotter.v1.btrfs/snapshots/7":               layout.StoreContainerd,
		"var/lib/containers/storage/btrfs/subvolumes/0123":                                layout.StorePodman,
		"var/lib/docker2/x": "",
		"@/rw":              "",
		"":                  "",
	} {
		if got := paths.StoreOf(subvol); got != want {
			t.Errorf("StoreOf(%q) = %q, want %q", subvol, got, want)
		}
	}
	if got := (StorePaths{Docker: "docker"}).StoreOf("docker/containerd/daemon/io.containerd.snapshotter.v1.btrfs/snapshots/3"); got != layout.StoreContainerd {
		t.Errorf("docker_path=docker's managed containerd: %q", got)
	}
	if got := paths.Others(); !slices.Equal(got, []string{"var/lib/containerd", "var/lib/containers/storage"}) {
		t.Errorf("Others() = %v", got)
	}
}
