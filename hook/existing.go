package hook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
)

// ExistingLayer is a layer booted as it was left instead of a fresh one.
type ExistingLayer struct {
	Name     string           // relative to the top level, as rootflags=subvol= names it
	SubvolID uint64           // 0 when unknown
	Image    string           // the image ID it was made from, when dockroot recorded it
	Mode     config.LayerMode // LayerPrevious (NAME.prev.1) or LayerCurrent (NAME)
	Why      string           // "dockroot.layer=previous", "a hibernation image is on /dev/vdb", ...
}

func prevLayerName(name string) string {
	return (&rwlayer.Layers{Name: name}).PrevName(1)
}

func (s *State) useExisting(li *rwlayer.LayerInfo, mode config.LayerMode, why string) *ExistingLayer {
	s.Existing = &ExistingLayer{Name: li.Name, SubvolID: li.SubvolID, Image: li.Image, Mode: mode, Why: why}
	return s.Existing
}

func (e *ExistingLayer) describe() string {
	var parts []string
	if e.SubvolID != 0 {
		parts = append(parts, fmt.Sprintf("subvolume %d", e.SubvolID))
	}
	if e.Image != "" {
		parts = append(parts, "made from image "+shortID(e.Image))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// findLayer returns the layer called name (relative to the top level), or
// nil if there is none, and every layer listed. Without dockroot's layer
// list (a corrupt ownership record, say) it looks for the subvolume
// directly: booting a layer as it was left changes nothing that record
// guards.
func (s *State) findLayer(name string) (*rwlayer.LayerInfo, []rwlayer.LayerInfo, error) {
	c := s.Config
	all, err := s.Env.Layers.List(&rwlayer.Layers{Top: s.Env.TopDir, Name: c.Subvol, DockerPath: c.DockerPath, StorePaths: storePaths(c)})
	if err == nil {
		for i := range all {
			if all[i].Name == name {
				return &all[i], all, nil
			}
		}
		return nil, all, nil
	}
	s.Env.Log.Warnf("listing the rw layers: %v; looking for %s directly", err, name)
	path := filepath.Join(s.Env.TopDir, name)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("look for the rw layer %s: %w", name, err)
	}
	if !fi.IsDir() {
		return nil, nil, nil
	}
	li := &rwlayer.LayerInfo{Name: name, Path: path}
	if id, err := s.Env.Layers.SubvolID(path); err == nil {
		li.SubvolID = id
	}
	return li, nil, nil
}

// noSuchLayer is the error for dockroot.layer= naming a layer that does
// not exist: it lists the ones that do and says what to boot instead.
func (s *State) noSuchLayer(name string, all []rwlayer.LayerInfo) error {
	c := s.Config
	var b strings.Builder
	fmt.Fprintf(&b, "dockroot.layer=%s: the rw layer %s does not exist on %s (%s); ", c.Layer, name, s.RootDev.Path, c.Root)
	if len(all) == 0 {
		fmt.Fprintf(&b, "there are no rw layers %s* yet", c.Subvol)
	} else {
		b.WriteString("the rw layers there are:")
		for _, li := range all {
			fmt.Fprintf(&b, "\n  %s", li.Name)
			var about []string
			if li.SubvolID != 0 {
				about = append(about, fmt.Sprintf("subvolume %d", li.SubvolID))
			}
			if !li.Created.IsZero() {
				about = append(about, "made "+li.Created.UTC().Format("2006-01-02 15:04 UTC"))
			}
			if li.Image != "" {
				about = append(about, "from image "+shortID(li.Image))
			}
			if len(about) > 0 {
				b.WriteString(" (" + strings.Join(about, ", ") + ")")
			}
		}
	}
	b.WriteString("\nboot without dockroot.layer= for a fresh layer of the image")
	if c.Layer == config.LayerPrevious && c.Keep == 0 {
		b.WriteString(" (dockroot.keep=0 keeps no previous layer; set dockroot.keep=1 to have one next time)")
	}
	if c.Layer == config.LayerPrevious && len(all) > 0 && all[0].Index == 0 {
		fmt.Fprintf(&b, ", or with dockroot.layer=current to boot %s as it was left", c.Subvol)
	}
	return errors.New(b.String())
}

// fallBack chooses the layer to boot when step st failed with
// dockroot.onfail=previous: NAME as it is, since nothing was committed, so
// it still holds the layer the last boot used (with that boot's changes);
// or, if NAME does not exist, NAME.prev.1. The fresh-layer steps that
// remain are skipped; the new root, the record and switch_root run as
// usual on the chosen layer, as for dockroot.layer=current or previous.
func (s *State) fallBack(st Step, cause error) error {
	if s.Config == nil || !s.TopMounted {
		return errors.New("the btrfs top level is not mounted")
	}
	c := s.Config
	for _, cand := range []struct {
		name string
		mode config.LayerMode
	}{{c.Subvol, config.LayerCurrent}, {prevLayerName(c.Subvol), config.LayerPrevious}} {
		li, _, err := s.findLayer(cand.name)
		if err != nil {
			return err
		}
		if li == nil {
			continue
		}
		s.useExisting(li, cand.mode, fmt.Sprintf("dockroot.onfail=previous after %q failed", st.Desc))
		s.Fallback = &bootrecord.Fallback{Step: st.Name, Reason: cause.Error(), Layer: li.Name}
		s.Env.Log.Errorf("!!! dockroot.onfail=previous: %q failed, so this boot uses the layer %s AS IT WAS LEFT, not a fresh copy of the image", st.Desc, li.Name)
		s.Env.Log.Errorf("!!! cause: %v", cause)
		return nil
	}
	return fmt.Errorf("neither %s nor %s exists on the root filesystem", c.Subvol, prevLayerName(c.Subvol))
}
