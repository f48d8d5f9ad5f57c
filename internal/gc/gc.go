// Package gc plans and carries out `dockroot gc` on a mounted btrfs top
// level: which previous rw layers (NAME.prev.N) and prepared bases go, and
// why each of the others stays. Planning is pure but for the file system
// listing, so the rules are table-tested; internal/commands parses the
// flags, finds the top level (internal/toplevel) and prints the plan.
//
// It must not import the boot (hook), internal/commands, internal/cli or
// cmd/…, and it never touches Docker's data root (rwlayer.Layers skips it).
package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"golang.org/x/sys/unix"
)

// Booted names the layer this system booted, from its boot record; gc
// never deletes it.
type Booted struct {
	Subvolume string // relative to the top level, without a leading "/"
	SubvolID  uint64
}

// LayerPlan is what gc does with one layer.
type LayerPlan struct {
	Layer  rwlayer.LayerInfo
	Delete bool
	Why    string
}

// BasePlan is what gc does with one prepared base.
type BasePlan struct {
	Base   rwlayer.BaseInfo
	Delete bool
	Why    string
}

// Plan is the whole of one gc run.
type Plan struct {
	Layers []LayerPlan
	Bases  []BasePlan
}

// Execute deletes what p says to delete, layers first, and returns how
// many layers and bases it deleted. It stops between deletions when ctx
// is done.
func Execute(ctx context.Context, l *rwlayer.Layers, p *Plan) (layers, bases int, err error) {
	for _, lp := range p.Layers {
		if !lp.Delete {
			continue
		}
		if err := ctx.Err(); err != nil {
			return layers, 0, fmt.Errorf("stopped: %w (deleted %d layers before)", err, layers)
		}
		del := func() error { return l.DeleteSubvolume(lp.Layer.Name) }
		if lp.Layer.Adopted {
			del = func() error { _, err := l.DeleteAdopted(); return err }
		}
		if err := del(); err != nil {
			return layers, 0, fmt.Errorf("%w (deleted %d layers before this one)", err, layers)
		}
		layers++
	}
	b := &rwlayer.Bases{Top: l.Top}
	for _, bp := range p.Bases {
		if !bp.Delete {
			continue
		}
		if err := ctx.Err(); err != nil {
			return layers, bases, fmt.Errorf("stopped: %w (deleted %d layers and %d bases before)", err, layers, bases)
		}
		if err := b.Delete(bp.Base.Name); err != nil {
			return layers, bases, fmt.Errorf("%w (deleted %d layers and %d bases before this one)", err, layers, bases)
		}
		bases++
	}
	return layers, bases, nil
}

// PlanBases keeps the bases whose image subvolume still exists, unless
// all is set.
func PlanBases(b *rwlayer.Bases, top string, all bool) ([]BasePlan, error) {
	list, err := b.List()
	if err != nil {
		return nil, err
	}
	var plan []BasePlan
	for _, bi := range list {
		p := BasePlan{Base: bi, Why: "its image is there; the next boot of " + orDash(bi.Key.Ref) + " uses it"}
		_, serr := os.Lstat(filepath.Join(top, bi.Key.ImageSubvol))
		switch {
		case bi.Key.ImageSubvol == "":
			p.Delete, p.Why = true, "no readable record of what it was made from"
		case errors.Is(serr, os.ErrNotExist):
			p.Delete, p.Why = true, "its image subvolume "+bi.Key.ImageSubvol+" is gone"
		case all:
			p.Delete, p.Why = true, "--bases"
		}
		plan = append(plan, p)
	}
	return plan, nil
}

// SameAsRoot says whether path is the subvolume mounted as /: every btrfs
// subvolume has a device number of its own (btrfs getattr reports the
// subvolume's anonymous dev), so equal st_dev and inode means the same
// subvolume root.
func SameAsRoot(path string) bool {
	var a, b unix.Stat_t
	if unix.Stat(path, &a) != nil || unix.Stat("/", &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// PlanLayers decides each layer's fate; isRoot reports whether a layer
// path is the mounted root. Pure but for isRoot, so it is table-tested.
// An adopted layer (the ancestor hook's) goes only when adopted is set
// (--adopted); an unfinished one (NAME.dockroot-tmp) goes when dockroot
// made it and it is not the layer the last boot committed; the layer of a
// failed trial (NAME.failed) goes whatever keep says, as no boot entry
// names it.
func PlanLayers(layers []rwlayer.LayerInfo, keep int, adopted bool, booted *Booted, isRoot func(string) bool) []LayerPlan {
	var plan []LayerPlan
	for _, li := range layers {
		p := LayerPlan{Layer: li}
		switch {
		case li.Index == 0:
			p.Why = "current layer (the next boot rotates it)"
		case booted != nil && (li.Name == booted.Subvolume || booted.SubvolID != 0 && li.SubvolID == booted.SubvolID):
			p.Why = "booted now (boot record)"
		case isRoot(li.Path):
			p.Why = "mounted as / now"
		case li.Tmp && !li.Owned:
			p.Why = "unfinished (an interrupted boot's, or not dockroot's): the next boot deletes it if it is dockroot's, else refuses to boot until it is moved"
		case !li.Owned:
			p.Why = "not created by dockroot: left alone"
		case li.Adopted && !adopted:
			p.Why = "adopted from the ancestor hook: kept until gc --adopted"
		case li.Adopted:
			p.Delete, p.Why = true, "delete (--adopted)"
		case li.Failed:
			p.Delete, p.Why = true, "delete: the layer of a boot of image "+shortID(li.Image)+" that was never marked good, "+
				"kept apart so that "+strings.TrimSuffix(li.Name, layout.FailedSuffix)+layout.PrevInfix+"1 stays the last good boot's (the next failed boot would replace it)"
		case li.Tmp && li.Live:
			p.Why = "the last boot's layer, displaced by an interrupted rotation: the next boot puts it back"
		case li.Tmp:
			p.Delete, p.Why = true, "delete: left unfinished by an interrupted boot"
		case li.Index <= keep:
			p.Why = fmt.Sprintf("kept (--keep %d)", keep)
		default:
			p.Delete, p.Why = true, "delete"
		}
		plan = append(plan, p)
	}
	return plan
}

// shortID is an image ID as `docker images` shows it, "-" when unknown.
func shortID(id string) string {
	if h, ok := strings.CutPrefix(id, "sha256:"); ok && len(h) > 12 {
		return h[:12]
	}
	return orDash(id)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// StorePaths are the image stores' roots relative to the btrfs top level
// (docker_path=, containerd_path=, podman_path=): gc never deletes in
// them, and names the store of a prepared base's image by them.
type StorePaths struct {
	Docker, Containerd, Podman string
}

// Others are the store roots besides Docker's data root, for
// rwlayer.Layers.StorePaths.
func (s StorePaths) Others() []string {
	var out []string
	for _, p := range []string{s.Containerd, s.Podman} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// StoreOf names the store holding the subvolume subvol (relative to the
// top level), as dockroot.store= names it, or "" when it is in none:
// Docker's own managed containerd lives inside its data root, so the
// containerd roots are tried first.
func (s StorePaths) StoreOf(subvol string) string {
	subvol = filepath.Clean("/" + subvol)[1:]
	in := func(dir string) bool {
		dir = filepath.Clean("/" + dir)[1:]
		return dir != "" && (subvol == dir || strings.HasPrefix(subvol, dir+"/"))
	}
	switch {
	case s.Docker != "" && in(filepath.Join(s.Docker, layout.DockerContainerdDir)), s.Containerd != "" && in(s.Containerd):
		return layout.StoreContainerd
	case s.Podman != "" && in(s.Podman):
		return layout.StorePodman
	case s.Docker != "" && in(s.Docker):
		return layout.StoreGraphDriver
	}
	return ""
}
