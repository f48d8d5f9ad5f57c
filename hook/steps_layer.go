// The steps that make the rw layer: choose it, resolve the image, count
// the boot, check the space, find the top layer, create the layer, apply
// the top layer and commit. All but the first are Step.Fresh.

package hook

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/bootstate"
	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/internal/machineid"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/snapshot/stores"
	"github.com/dockroot/dockroot/toplayer"
	"golang.org/x/sys/unix"
)

// layerSteps choose the rw layer and, unless an existing one boots as it
// was left, make a fresh one from the image and commit it. The init is
// checked in the fresh layer ("apply the top layer") before "commit", so a
// layer that cannot boot never replaces the one that did.
func layerSteps() []Step {
	return []Step{
		{Name: "layer", Desc: "choose the rw layer", Run: chooseLayer,
			Detail: layerDetail},
		{Name: "image", Desc: "resolve the image", Fresh: true, Run: resolveImage,
			Detail: func(s *State) string { return s.Config.Image }},
		{Name: "boot-count", Desc: "count the boot", Fresh: true, Optional: true, Run: countBoot,
			Detail: func(s *State) string { return fmt.Sprintf("dockroot.tries=%d", s.Config.Tries) }},
		{Name: "free-space", Desc: "check the free space", Fresh: true, Run: checkFreeSpace,
			Detail: func(s *State) string { return s.Env.TopDir }},
		{Name: "top-layer-source", Desc: "find the top layer", Fresh: true, Run: findTopLayer,
			Detail: toplayerDetail},
		{Name: "rw-layer", Desc: "create the rw layer", Fresh: true, Run: createLayer,
			Detail: func(s *State) string { return s.Image.Subvolume + " -> " + s.Config.Subvol }},
		{Name: "top-layer", Desc: "apply the top layer", Fresh: true, Run: applyTopLayer,
			Detail: toplayerDetail},
		{Name: "commit", Desc: "commit the rw layer", Fresh: true, Run: commitLayer,
			Detail: func(s *State) string { return s.Pending.Path() + " -> " + s.Config.Subvol }},
	}
}

func layerDetail(s *State) string {
	c := s.Config
	switch {
	case c.Layer == config.LayerPrevious:
		return "dockroot.layer=previous: " + prevLayerName(c.Subvol)
	case c.Layer == config.LayerCurrent:
		return "dockroot.layer=current: " + c.Subvol
	case s.Hibernation != nil:
		return "hibernation: " + c.Subvol + " as it is"
	}
	return "new: " + c.Subvol + " fresh from the image"
}

// chooseLayer decides between a fresh layer and an existing one:
// dockroot.layer=previous boots NAME.prev.1 and dockroot.layer=current
// NAME, as they were left; with the default, a hibernation image keeps
// NAME as the hibernated system left it.
func chooseLayer(s *State) error {
	c := s.Config
	switch c.Layer {
	case config.LayerPrevious, config.LayerCurrent:
		name := c.Subvol
		if c.Layer == config.LayerPrevious {
			name = prevLayerName(c.Subvol)
		}
		li, all, err := s.findLayer(name)
		if err != nil {
			return err
		}
		if li == nil {
			return s.noSuchLayer(name, all)
		}
		e := s.useExisting(li, c.Layer, "dockroot.layer="+string(c.Layer))
		s.Env.Log.Noticef("dockroot.layer=%s: booting %s as it was left, not a fresh copy of the image%s", c.Layer, name, e.describe())
		s.Notef("%s as it was left", name)
		return nil
	}
	if s.Hibernation == nil {
		s.Notef("a fresh snapshot of the image")
		return nil
	}
	li, _, err := s.findLayer(c.Subvol)
	if err != nil {
		return err
	}
	if li == nil {
		s.Env.Log.Warnf("hibernation: %s does not exist, so the hibernated system cannot have mounted it: making a new one", c.Subvol)
		s.Notef("a fresh snapshot of the image (%s does not exist yet)", c.Subvol)
		return nil
	}
	s.useExisting(li, config.LayerCurrent, "a hibernation image is on "+orDevice(s.Hibernation.Device))
	s.Env.Log.Errorf("!!! hibernation: this boot mounts %s AS IT WAS LEFT, not a fresh copy of the image, so that it still matches the hibernated system", c.Subvol)
	s.Notef("%s as it was left (hibernation image on %s)", c.Subvol, orDevice(s.Hibernation.Device))
	return nil
}

func resolveImage(s *State) error {
	store, err := s.Env.Images.Open(s.Config.Store, s.Env.TopDir, stores.Paths{Docker: s.Config.DockerPath, Podman: s.Config.PodmanPath, Containerd: s.Config.ContainerdPath})
	if err != nil {
		return err
	}
	s.store = store
	img, err := store.Resolve(s.Config.Image)
	if err != nil {
		return err
	}
	s.Image = img
	s.Notef("%s = %s, subvolume %s", img.Ref, shortID(img.ID), img.Subvolume)
	return nil
}

// countBoot counts this boot of the image that is not yet marked good and,
// after dockroot.tries= such boots, switches to the last good image. It is
// optional: a state file that cannot be read or written must not stop a
// boot, it only loses the count.
func countBoot(s *State) error {
	c := s.Config
	if c.Tries <= 0 {
		return Skip("dockroot.tries=0: boot counting is off")
	}
	if s.Env.BootCount == nil {
		return Skip("this init does not count boots")
	}
	d, lastGood, err := s.Env.BootCount.BeginBoot(s.Env.TopDir, s.Image.ID, s.Image.Ref, c.Tries)
	bc := &bootrecord.BootCount{Tries: c.Tries, Attempt: d.Attempt,
		Requested: bootrecord.ImageRef{Ref: s.Image.Ref, ID: s.Image.ID}, Message: d.Message}
	if lastGood != nil {
		bc.LastGood = &bootrecord.ImageRef{Ref: lastGood.Ref, ID: lastGood.ID}
	}
	s.BootCount = bc
	if d.Action != bootstate.FallBack {
		s.Notef("%s", d.Message)
		return err
	}

	s.Env.Log.Errorf("!!! %s", d.Message)
	img, rerr := s.store.Resolve(d.Image.ID)
	if rerr != nil {
		bc.Message += fmt.Sprintf("; but the last good image cannot be booted (%v), so %s boots after all", rerr, d.Requested)
		s.Env.Log.Errorf("!!! cannot boot the last good image %s: %v; booting %s after all", d.Image, rerr, d.Requested)
		s.Notef("no fallback: the last good image is gone")
		return err
	}
	if d.Image.Ref != "" {
		// Resolved by ID, the image's Ref is the ID: say what it was
		// booted as when it was marked good.
		img.Ref = d.Image.Ref
	}
	bc.FellBack = true
	s.Image = img
	s.Notef("FELL BACK to the last good image %s = %s", img.Ref, shortID(img.ID))
	return err
}

// checkFreeSpace refuses to make a new layer on a nearly full filesystem,
// before anything is changed, and warns when space is short (see package
// freespace for the thresholds).
func checkFreeSpace(s *State) error {
	sp, err := s.Env.Layers.FreeSpace(s.Env.TopDir)
	if err != nil {
		return err
	}
	if w := freespace.Warning(s.Env.TopDir, sp); w != "" {
		s.Env.Log.Warnf("%s", w)
	}
	s.Notef("%s free of %s", freespace.Human(sp.Free), freespace.Human(sp.Total))
	return nil
}

// findTopLayer finds the top layer (mounting its device when it is not
// the root one), expands the elements of toplayer_path= with the machine's
// identity, says which it skips and, with prepared bases on, finds the
// base this boot can make its layer from.
func findTopLayer(s *State) error {
	c := s.Config
	if c.ToplayerPath == "" {
		s.Notef("none (toplayer_path= is empty)")
		return nil
	}
	t, err := s.toplayerSource()
	if err != nil {
		return err
	}
	skipped := ""
	if sk := t.skipped(); len(sk) > 0 {
		var parts []string
		for _, e := range sk {
			parts = append(parts, e.describe()+" ("+e.skip+")")
			if !c.ToplayerRequired {
				s.Env.Log.Warnf("top layer: skipped %s: %s; this machine: %s", e.describe(), e.skip, s.identity())
			}
		}
		skipped = "; skipped " + strings.Join(parts, ", ")
		if c.ToplayerRequired {
			s.Notef("%s on %s%s: the top-layer step will fail (dockroot.toplayer_required=1)", t.list(), t.desc, skipped)
			return nil
		}
	}
	if len(t.applied()) == 0 {
		s.Notef("nothing to apply on %s%s", t.desc, skipped)
		return nil
	}
	s.findBase(t)
	switch b := s.base; {
	case !c.Cache:
		s.Notef("%s on %s (prepared bases off: dockroot.cache=0)%s", t.list(), t.desc, skipped)
	case s.Env.Bases == nil:
		s.Notef("%s on %s%s", t.list(), t.desc, skipped)
	case b == nil:
		s.Notef("%s on %s (no prepared base can be kept for it)%s", t.list(), t.desc, skipped)
	case b.reused:
		s.Notef("%s on %s, unchanged: prepared base %s%s", t.list(), t.desc, b.rel, skipped)
	default:
		s.Notef("%s on %s: no prepared base for this image and top layer yet%s", t.list(), t.desc, skipped)
	}
	return nil
}

func createLayer(s *State) error {
	c := s.Config
	source := s.Image.Subvolume
	if s.base != nil && s.base.reused {
		source = s.base.rel
	}
	l := &rwlayer.Layers{Top: s.Env.TopDir, Name: c.Subvol, Keep: c.Keep, DockerPath: c.DockerPath, StorePaths: storePaths(c), Image: s.Image.ID}
	if bc := s.BootCount; bc != nil && bc.LastGood != nil {
		// The layer this commit displaces goes to NAME.failed instead of
		// NAME.prev.1 when it was made from another image, one on trial:
		// so the "previous layer" boot entry and dockroot.onfail=previous
		// still find the last good boot's layer after failed trials.
		l.LastGood = bc.LastGood.ID
	}
	if c.Adopt {
		// The ancestor hook's NAME is a snapshot of the image it booted:
		// only that is adopted, never another Docker subvolume.
		l.AdoptFrom = s.Image.Subvolume
	}
	p, err := s.Env.Layers.Prepare(l, source)
	if err != nil {
		return err
	}
	s.Pending = p
	if s.base != nil && s.base.reused {
		s.Notef("prepared %s from the prepared base %s", p.Path(), s.base.rel)
	} else {
		s.Notef("prepared %s", p.Path())
	}
	return nil
}

// baseUse is what findBase decided.
type baseUse struct {
	key    rwlayer.BaseKey
	rel    string // the base, relative to the top level, when reused
	reused bool
}

// findBase looks for the prepared base of this image and the top layer t.
// It sets s.base when bases are on (dockroot.cache=, the default): reused
// when one matches. A top layer that cannot be fingerprinted is logged and
// copied in full.
func (s *State) findBase(t *topLayers) {
	c := s.Config
	if s.Env.Bases == nil || !c.Cache {
		return
	}
	var keys []rwlayer.BaseKey
	for _, e := range t.applied() {
		k, err := s.Env.Bases.Key(s.Env.TopDir, c.Subvol, s.Image, e.src, t.desc+":"+e.path)
		if err != nil {
			s.Env.Log.Printf("top layer: no prepared base, it is copied in full: %v", err)
			return
		}
		keys = append(keys, k)
	}
	var skipped []string
	for _, e := range t.skipped() {
		skipped = append(skipped, e.describe())
	}
	k := combineBaseKeys(t.desc, keys, skipped)
	s.base = &baseUse{key: k}
	if rel, ok := s.Env.Bases.Find(s.Env.TopDir, k); ok {
		s.base.rel, s.base.reused = rel, true
	}
}

func toplayerDetail(s *State) string {
	if s.Config.ToplayerPath == "" {
		return "none: toplayer_path= is empty"
	}
	return s.Config.Toplayer + ":" + s.Config.ToplayerPath
}

// applyTopLayer copies the top layer into the prepared layer, finds the
// image's init in it and, with bases on, saves it as the next boot's base.
// A layer made from a prepared base already holds the top layer;
// otherwise the base is saved here, just before the commit, while nothing
// but the image and the top layer is in the layer.
func applyTopLayer(s *State) error {
	s.copied = 0
	if s.Config.ToplayerPath != "" {
		t, err := s.toplayerSource()
		if err != nil {
			return err
		}
		if err := s.requireToplayer(t); err != nil {
			return err
		}
		if len(t.applied()) > 0 {
			s.Toplayer = &bootrecord.Toplayer{Device: t.desc, Path: t.list()}
			for _, e := range t.filter(false) {
				s.Toplayer.Skipped = append(s.Toplayer.Skipped, e.describe()+": "+e.skip)
			}
		}
		if b := s.base; b != nil && b.reused {
			s.Toplayer.Base, s.Toplayer.Reused = b.rel, true
		} else if s.Toplayer != nil {
			several := len(t.applied()) > 1
			for _, e := range t.applied() {
				sum, err := s.Env.Layers.ApplyTop(s.Pending.Path(), e.src)
				if err != nil {
					return err
				}
				if several {
					s.Env.Log.Printf("top layer: applied %s: %s", e.describe(), sum)
				}
				addSummary(&s.Toplayer.Summary, sum)
				for _, sk := range sum.Skipped {
					s.Env.Log.Warnf("top layer: skipped %s", sk)
				}
				for _, w := range sum.Warnings {
					s.Env.Log.Warnf("top layer: %s", w)
				}
			}
			s.copied = s.Toplayer.Summary.Copied
		}
	}
	// A layer that cannot boot must not replace the one that did: find its
	// init now, in the layer exactly as it will be mounted (the top layer
	// is in it), and only then commit, which rotates and, with
	// dockroot.keep=0, deletes the previous layer.
	init, err := s.chooseInit(s.Pending.Path())
	if err != nil {
		return fmt.Errorf("the new rw layer has no init that can run, so it was not committed and %s is still the layer the last boot used: %w", s.Config.Subvol, err)
	}
	s.Init, s.InitChecked = init, true
	if b := s.base; b != nil && !b.reused {
		// A cache: failing to keep one costs the next boot a copy, no more.
		rel, _, err := s.Env.Bases.Save(s.Env.TopDir, s.Pending.Path(), b.key)
		switch {
		case rel == "":
			s.Env.Log.Warnf("top layer: could not keep a prepared base for the next boot (it will copy the top layer again): %v", err)
		case err != nil:
			s.Env.Log.Warnf("top layer: kept the prepared base %s, but an older one could not be deleted (dockroot gc deletes it): %v", rel, err)
		}
		s.Toplayer.Base = rel
	}
	switch t := s.Toplayer; {
	case t == nil && s.Config.ToplayerPath != "":
		s.Notef("no top layer: no directory of toplayer_path= exists on this machine")
	case t == nil:
		s.Notef("no top layer (toplayer_path= is empty)")
	case t.Reused:
		s.Notef("unchanged since the prepared base was made, nothing copied")
	default:
		s.Notef("%s", t.Summary)
	}
	return nil
}

// commitLayer puts the prepared layer in place as NAME and rotates the
// previous ones. It is the last fresh step on purpose: until it succeeds
// the layer the last boot used stays NAME, and a failure aborts only the
// new one.
func commitLayer(s *State) error {
	if s.copied == 0 {
		// No top layer, or everything it wrote was reflinked from the
		// same btrfs (the default toplayer=), or it came with the base: no
		// data to write back first.
		s.Pending.MetadataOnly()
	}
	res, err := s.Pending.Commit()
	if err != nil {
		return fmt.Errorf("commit the rw layer %s: %w", s.Config.Subvol, err)
	}
	s.Layer, s.Committed, s.Pending = *res, true, nil
	for _, w := range res.Warnings {
		s.Env.Log.Warnf("rw layer: %s", w)
	}
	s.Notef("committed %s (subvolume %d)", s.Config.Subvol, res.SubvolID)
	return nil
}

// topLayers is toplayer_path= as this boot resolved it: the device, and
// each element expanded with the machine's identity.
type topLayers struct {
	desc  string // the device, "/dev/vdb (LABEL=top)"
	elems []topElem
}

// topElem is one element of toplayer_path=.
type topElem struct {
	tmpl string // as configured: fleet/machines/%u
	path string // expanded, relative to the device's top level; "" when a value is missing
	src  string // path on the mounted device
	skip string // why it is not applied; "" when it is
}

// describe names the element as the log shows it: the expanded path and,
// when placeholders made it, the element as configured.
func (e topElem) describe() string {
	switch e.path {
	case "":
		return e.tmpl
	case e.tmpl:
		return e.path
	}
	return e.path + " (" + e.tmpl + ")"
}

func (t *topLayers) applied() []topElem { return t.filter(true) }
func (t *topLayers) skipped() []topElem { return t.filter(false) }

func (t *topLayers) filter(applied bool) []topElem {
	var out []topElem
	for _, e := range t.elems {
		if (e.skip == "") == applied {
			out = append(out, e)
		}
	}
	return out
}

// list is the applied elements, expanded and comma-joined: the one path
// of a single toplayer_path=, as before lists.
func (t *topLayers) list() string {
	var paths []string
	for _, e := range t.applied() {
		paths = append(paths, e.path)
	}
	return strings.Join(paths, ",")
}

// toplayerSource returns the top layer's device and directories, mounting
// that device read-only when it is not the root one.
func (s *State) toplayerSource() (*topLayers, error) {
	if s.tops != nil {
		return s.tops, nil
	}
	dir, desc, err := s.findToplayer()
	if err != nil {
		return nil, err
	}
	t, err := s.resolveToplayer(dir, desc)
	if err == nil {
		s.tops = t
	}
	return t, err
}

// resolveToplayer expands each element of toplayer_path= on the device
// mounted at dir. An element whose directory does not exist, or whose
// placeholder has no value on this machine, is marked skipped; a single
// path without placeholders never is, so that it must exist, as it had to
// before lists. An element the machine's values turn into one of the
// places config refuses (a serial number that spells "var") fails.
func (s *State) resolveToplayer(dir, desc string) (*topLayers, error) {
	c := s.Config
	elems := c.ToplayerPaths
	if elems == nil {
		elems = []string{c.ToplayerPath}
	}
	single := len(elems) == 1 && !machineid.HasPlaceholders(elems[0])
	t := &topLayers{desc: desc}
	for _, tmpl := range elems {
		e := topElem{tmpl: tmpl, path: tmpl}
		if strings.Contains(tmpl, "%") {
			p, err := machineid.Expand(tmpl, s.identity())
			if err != nil {
				e.path, e.skip = "", err.Error()
				t.elems = append(t.elems, e)
				continue
			}
			if err := c.CheckToplayerPath(p); err != nil {
				return nil, fmt.Errorf("element %q of toplayer_path= is %q on this machine (%s): %w", tmpl, p, s.identity(), err)
			}
			e.path = p
		}
		e.src = filepath.Join(dir, e.path)
		if _, err := os.Lstat(e.src); !single && errors.Is(err, fs.ErrNotExist) {
			e.skip = "does not exist"
		}
		t.elems = append(t.elems, e)
	}
	return t, nil
}

// requireToplayer fails the top-layer step for the skipped elements when
// dockroot.toplayer_required=1.
func (s *State) requireToplayer(t *topLayers) error {
	sk := t.skipped()
	if !s.Config.ToplayerRequired || len(sk) == 0 {
		return nil
	}
	var parts []string
	for _, e := range sk {
		parts = append(parts, e.describe()+": "+e.skip)
	}
	return fmt.Errorf("top layer on %s: %s; dockroot.toplayer_required=1 makes that a failure; this machine: %s; create the directory, or boot with dockroot.toplayer_required=0 to go without it",
		t.desc, strings.Join(parts, "; "), s.identity())
}

// identity is the machine's identity, read once per boot.
func (s *State) identity() machineid.Identity {
	if s.machine == nil {
		id := machineid.Unknown()
		if s.Env.Machine != nil {
			id = s.Env.Machine.Read()
		}
		s.machine = &id
	}
	return *s.machine
}

// addSummary adds what one directory of the top layer wrote to sum.
func addSummary(sum *toplayer.Summary, one toplayer.Summary) {
	sum.Files += one.Files
	sum.Dirs += one.Dirs
	sum.Symlinks += one.Symlinks
	sum.Specials += one.Specials
	sum.HardLinks += one.HardLinks
	sum.Whiteouts += one.Whiteouts
	sum.Bytes += one.Bytes
	sum.Copied += one.Copied
	sum.Duration += one.Duration
	sum.Skipped = append(sum.Skipped, one.Skipped...)
	sum.Warnings = append(sum.Warnings, one.Warnings...)
}

// findToplayer returns the top level of the top layer's device and a
// description of the device, mounting it read-only when it is not the
// root one.
func (s *State) findToplayer() (dir, dev string, err error) {
	c := s.Config
	rootDesc := s.RootDev.Path + " (" + c.Root + ")"
	if c.Toplayer == "" || c.Toplayer == c.Root {
		return s.Env.TopDir, rootDesc, nil
	}
	d, err := s.Env.Devices.Wait(c.ToplayerDevice, "toplayer", c)
	if err != nil {
		return "", "", err
	}
	if d.Path == s.RootDev.Path {
		return s.Env.TopDir, rootDesc, nil
	}
	fstype := c.ToplayerFSType
	if fstype == "" {
		fstype = d.FSType
	}
	if fstype == "" {
		return "", "", fmt.Errorf("top-layer device %s (%s): unknown filesystem type; set toplayerfstype=", d.Path, c.Toplayer)
	}
	flags, data := MountOptions(c.ToplayerFlags)
	flags |= unix.MS_RDONLY // dockroot only reads the top layer
	if err := os.MkdirAll(s.Env.ToplayerDir, 0o755); err != nil {
		return "", "", fmt.Errorf("mkdir %s: %w", s.Env.ToplayerDir, err)
	}
	if err := s.Env.System.Mount(d.Path, s.Env.ToplayerDir, fstype, flags, data); err != nil {
		return "", "", fmt.Errorf("mount top-layer device %s (%s) on %s (%s, ro %s): %w; check toplayerfstype= and toplayerflags=", d.Path, c.Toplayer, s.Env.ToplayerDir, fstype, data, err)
	}
	s.ToplayerDev = s.Env.ToplayerDir
	return s.Env.ToplayerDir, d.Path + " (" + c.Toplayer + ")", nil
}

func shortID(id string) string {
	if h, ok := strings.CutPrefix(id, "sha256:"); ok && len(h) > 12 {
		return h[:12]
	}
	return id
}

// storePaths are the image stores' roots besides Docker's data root
// (podman_path=, containerd_path=), which the rw layer's name must stay
// out of whatever store this boot reads: rotating one would move its
// images.
func storePaths(c *config.Config) []string {
	var out []string
	for _, p := range []string{c.PodmanPath, c.ContainerdPath} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}
