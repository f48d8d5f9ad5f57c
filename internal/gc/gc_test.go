package gc

import (
	"strings"
	"testing"

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
	}
	rootIs := func(p string) func(string) bool { return func(s string) bool { return s == p } }
	for _, tc := range []struct {
		name   string
		keep   int
		booted *Booted
		isRoot func(string) bool
		del    string // names deleted, space-separated
	}{
		{"keep 1", 1, nil, rootIs(""), "@/rw.prev.2 @/rw.prev.4 @/rw.prev.5"},
		{"keep 0", 0, nil, rootIs(""), "@/rw.prev.1 @/rw.prev.2 @/rw.prev.4 @/rw.prev.5"},
		{"keep 9", 9, nil, rootIs(""), ""},
		{"booted by name", 0, &Booted{Subvolume: "@/rw.prev.2"}, rootIs(""), "@/rw.prev.1 @/rw.prev.4 @/rw.prev.5"},
		{"booted by id", 0, &Booted{Subvolume: "elsewhere", SubvolID: 260}, rootIs(""), "@/rw.prev.1 @/rw.prev.2 @/rw.prev.5"},
		{"mounted as /", 0, nil, rootIs("/t/@/rw.prev.5"), "@/rw.prev.1 @/rw.prev.2 @/rw.prev.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var del []string
			for _, p := range PlanLayers(layers, tc.keep, tc.booted, tc.isRoot) {
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
		})
	}
}
