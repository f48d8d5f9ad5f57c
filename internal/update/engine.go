// Package update keeps a machine's boot directory and boot menus in step
// with its Docker images: `dockroot update` pulls the references that have
// boot entries and stages what changed for the next boot, `dockroot watch`
// (package watch) reacts to dockerd's events, and `dockroot gc --boot-dir`
// removes what neither needs any more. All three go through one Engine, so
// a kernel is installed the way `dockroot install` installs it (package
// install: staged, then swapped in whole) and a menu is written the way
// `dockroot menu -o` writes it (package bootmenu: temporary file and
// rename, never over a file dockroot did not write).
//
// The way back is never lost: the image that runs now and the last good
// image (from the boot record, /run/dockroot/boot.json), and the image
// staged for the next boot, are kept by a tag and a
// created-but-never-started container of dockroot's own
// (dockroot/keep:ROLE-ID, dockroot-keep-ROLE-ID). The tag keeps them from
// `docker image prune` and from `docker rmi REF` (which then only untags);
// the container keeps them from `docker image prune -a`, which deletes
// every image no container uses, tagged or not.
//
// It talks to dockerd through its API (github.com/moby/moby/client) and
// reads the image files offline through package install. It is host-only:
// it must not import the boot (hook), internal/commands or cmd/….
package update

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/bootrecord"
	"github.com/dockroot/dockroot/internal/imagekernel"
	"github.com/dockroot/dockroot/internal/install"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Names of what dockroot owns in dockerd. Nothing else there is ever
// removed by this package.
const (
	// KeepRepo is the repository of the protective tags: KeepRepo:ROLE-ID,
	// ID the first 12 hex digits of the image ID.
	KeepRepo = "dockroot/keep"
	// KeepContainerPrefix starts the name of a protective container:
	// KeepContainerPrefix + ROLE + "-" + 12 hex digits of the image ID.
	KeepContainerPrefix = "dockroot-keep-"
	// KeepLabel marks a protective container; its value is the role.
	KeepLabel = "org.dockroot.keep"
)

// Roles of protected images.
const (
	RoleRunning  = "running"
	RoleLastGood = "last-good"
	RoleStaged   = "staged" // installed by update, not booted yet
)

// Engine is one boot directory and the dockerd whose images it boots.
type Engine struct {
	Client     *client.Client
	Host       string // DOCKER_HOST URL, for messages
	BootDir    string // absolute
	DockerRoot string // dockerd's data root, from its API
	InitBinary string // dockroot-init for the initramfs
	// InitChoices, when InitBinary is empty, are the dockroot-init binaries
	// of each architecture; install takes the one for the image's kernel.
	InitChoices []string
	BootRecord  string // boot.json of this boot; a missing file means nothing runs from here
	// Bootloader limits menu writing to that loader's recorded menu; ""
	// writes every recorded menu.
	Bootloader string
	Log        func(format string, args ...any)
	// noKernel remembers images found without a kernel, so watch does not
	// scan them again on every event.
	noKernel map[string]bool
}

// Connect returns an Engine for dockerd at host ("" for the default
// socket), checking that it keeps its images where dockroot can
// read them (the btrfs storage driver).
func Connect(ctx context.Context, host string) (*Engine, error) {
	if host == "" {
		host = client.DefaultDockerHost
	}
	opts := []client.Opt{client.WithHost(host)}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker API client for %s: %w", host, err)
	}
	info, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		c.Close()
		return nil, &DaemonError{Host: host, Err: err}
	}
	if info.Info.Driver != "btrfs" {
		c.Close()
		return nil, fmt.Errorf("dockerd at %s uses the %s storage driver; dockroot boots the btrfs driver's subvolumes: "+
			"set {\"storage-driver\": \"btrfs\"} in /etc/docker/daemon.json and restart dockerd", host, info.Info.Driver)
	}
	return &Engine{Client: c, Host: host, DockerRoot: info.Info.DockerRootDir}, nil
}

// DaemonError: dockerd did not answer.
type DaemonError struct {
	Host string
	Err  error
}

func (e *DaemonError) Error() string { return fmt.Sprintf("ask dockerd at %s: %v", e.Host, e.Err) }
func (e *DaemonError) Unwrap() error { return e.Err }

// Close closes the API client.
func (e *Engine) Close() error { return e.Client.Close() }

func (e *Engine) logf(format string, args ...any) {
	if e.Log != nil {
		e.Log(format, args...)
	}
}

// Install installs ref's kernel and initramfs, as `dockroot install` does.
func (e *Engine) Install(ctx context.Context, ref string) (*install.Result, error) {
	return install.Run(ctx, install.Options{
		Ref:         ref,
		BootDir:     e.BootDir,
		DockerRoot:  e.DockerRoot,
		Store:       layout.StoreGraphDriver,
		InitBinary:  e.InitBinary,
		InitChoices: e.InitChoices,
	})
}

// Menus rewrites every menu `dockroot menu -o` recorded in the boot
// directory (only e.Bootloader's when set), leaving out the entries of
// omit. It returns the files written; a loader asked for that has no
// record is a MenuNotRecordedError.
func (e *Engine) Menus(ctx context.Context, omit ...string) ([]string, error) {
	menus, err := bootmenu.ReadMenuRecords(e.BootDir)
	if err != nil {
		return nil, err
	}
	var done []string
	found := false
	for _, m := range menus {
		if e.Bootloader != "" && m.Bootloader != e.Bootloader {
			continue
		}
		found = true
		m.Omit = omit
		if _, err := bootmenu.Generate(ctx, m, io.Discard); err != nil {
			return done, fmt.Errorf("%s menu %s: %w", m.Bootloader, m.Out, err)
		}
		done = append(done, m.Out)
	}
	if e.Bootloader != "" && !found {
		return nil, &MenuNotRecordedError{BootDir: e.BootDir, Bootloader: e.Bootloader}
	}
	return done, nil
}

// MenuNotRecordedError: no `dockroot menu -o` for that loader has been run
// with this boot directory, so where its menu goes is not known.
type MenuNotRecordedError struct{ BootDir, Bootloader string }

func (e *MenuNotRecordedError) Error() string {
	return fmt.Sprintf("no %s menu recorded in %s", e.Bootloader, e.BootDir)
}

// Booted is what the boot record says runs now and was last good.
type Booted struct {
	Ref, ID    string // the image that booted
	LastGoodID string
	LastGood   string // its reference
}

// ReadBooted reads e.BootRecord; a missing record is an empty Booted.
func (e *Engine) ReadBooted() (Booted, error) {
	if e.BootRecord == "" {
		return Booted{}, nil
	}
	rec, err := bootrecord.Read(e.BootRecord)
	if errors.Is(err, fs.ErrNotExist) {
		return Booted{}, nil
	}
	if err != nil {
		return Booted{}, err
	}
	b := Booted{Ref: rec.Ref, ID: rec.ImageID}
	if b.ID == "" {
		b.ID = rec.Layer.Image
	}
	if bc := rec.BootCount; bc != nil && bc.LastGood != nil {
		b.LastGoodID, b.LastGood = bc.LastGood.ID, bc.LastGood.Ref
	}
	return b, nil
}

// Protect keeps the running and the last good image (ReadBooted), and
// each image staged for the next boot (ReadState), with a tag and a
// container of dockroot's own each, then removes the protective tags and
// containers of images that no longer hold a role. Each change is
// logged; with dryRun nothing changes.
func (e *Engine) Protect(ctx context.Context, dryRun bool) error {
	b, err := e.ReadBooted()
	if err != nil {
		return err
	}
	want := map[string]string{} // role-<short id> -> image ID
	add := func(role, id string) {
		if id != "" {
			want[keepName(role, id)] = id
		}
	}
	add(RoleRunning, b.ID)
	add(RoleLastGood, b.LastGoodID)
	if e.BootDir != "" {
		st, err := ReadState(e.BootDir)
		if err != nil {
			return err
		}
		for _, s := range st.Staged {
			if s.ImageID != b.ID {
				add(RoleStaged, s.ImageID)
			}
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := e.protect(ctx, k, want[k], dryRun); err != nil {
			return err
		}
	}
	return e.unprotectStale(ctx, want, dryRun)
}

// keepName is the tag (KeepRepo:keepName) and, after KeepContainerPrefix,
// the container name that keep image id in role.
func keepName(role, id string) string { return role + "-" + short(id) }

func (e *Engine) protect(ctx context.Context, key, id string, dryRun bool) error {
	if _, err := e.Client.ImageInspect(ctx, id); err != nil {
		e.logf("cannot protect image %s (%s): dockerd does not have it (%v)", short(id), key, err)
		return nil
	}
	tag := KeepRepo + ":" + key
	if cur, err := e.Client.ImageInspect(ctx, tag); err != nil || cur.ID != id {
		if dryRun {
			e.logf("would tag %s as %s", short(id), tag)
		} else {
			if _, err := e.Client.ImageTag(ctx, client.ImageTagOptions{Source: id, Target: tag}); err != nil {
				return fmt.Errorf("tag image %s as %s: %w", short(id), tag, err)
			}
			e.logf("tagged %s as %s", short(id), tag)
		}
	}
	name := KeepContainerPrefix + key
	if _, err := e.Client.ContainerInspect(ctx, name, client.ContainerInspectOptions{}); err == nil {
		return nil
	}
	if dryRun {
		e.logf("would keep %s with the container %s", short(id), name)
		return nil
	}
	// Never started: a container that exists is enough for dockerd to
	// keep its image (image prune -a skips images in use). A command is
	// given so that an image without CMD can be kept too.
	_, err := e.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:      id,
			Cmd:        []string{"/dockroot-keep-never-started"},
			Entrypoint: []string{},
			Labels:     map[string]string{KeepLabel: key},
		},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		return fmt.Errorf("create the container %s that keeps image %s: %w", name, short(id), err)
	}
	e.logf("kept %s with the container %s", short(id), name)
	return nil
}

// unprotectStale removes dockroot's protective containers and tags that
// keep an image no longer in the role they name.
func (e *Engine) unprotectStale(ctx context.Context, want map[string]string, dryRun bool) error {
	list, err := e.Client.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", KeepLabel)})
	if err != nil {
		return fmt.Errorf("list dockroot's protective containers: %w", err)
	}
	for _, c := range list.Items {
		key := c.Labels[KeepLabel]
		if id, ok := want[key]; ok && c.ImageID == id {
			continue
		}
		name := strings.TrimPrefix(firstName(c.Names), "/")
		if !strings.HasPrefix(name, KeepContainerPrefix) {
			continue // labelled by someone else: not dockroot's
		}
		if dryRun {
			e.logf("would remove %s: image %s no longer has that role", name, short(c.ImageID))
			continue
		}
		if _, err := e.Client.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{}); err != nil {
			return fmt.Errorf("remove the stale protective container %s: %w", name, err)
		}
		e.logf("removed %s: image %s no longer has that role", name, short(c.ImageID))
	}
	imgs, err := e.Client.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", KeepRepo)})
	if err != nil {
		return fmt.Errorf("list dockroot's protective tags: %w", err)
	}
	for _, img := range imgs.Items {
		for _, t := range img.RepoTags {
			key, ok := strings.CutPrefix(t, KeepRepo+":")
			if !ok {
				continue
			}
			if id, ok := want[key]; ok && img.ID == id {
				continue
			}
			if dryRun {
				e.logf("would remove the tag %s of %s", t, short(img.ID))
				continue
			}
			// Removing a tag of an image that has other tags only untags;
			// an image left with no name and no container goes, which is
			// the point: nothing needs it.
			if _, err := e.Client.ImageRemove(ctx, t, client.ImageRemoveOptions{}); err != nil {
				e.logf("could not remove the stale tag %s: %v", t, err)
				continue
			}
			e.logf("removed the stale tag %s of %s", t, short(img.ID))
		}
	}
	return nil
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// Tags lists dockerd's tags, full reference -> image ID, leaving out
// dockroot's protective tags.
func (e *Engine) Tags(ctx context.Context) (map[string]string, error) {
	list, err := e.Client.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list images of dockerd at %s: %w", e.Host, err)
	}
	out := map[string]string{}
	for _, img := range list.Items {
		for _, t := range img.RepoTags {
			if t == "<none>:<none>" || strings.HasPrefix(t, KeepRepo+":") {
				continue
			}
			out[fullRef(t)] = img.ID
		}
	}
	return out, nil
}

// fullRef normalizes a reference for comparison ("desk" ->
// "docker.io/library/desk:latest"); one that does not parse stays.
func fullRef(ref string) string {
	if r, err := snapshot.ParseRef(ref); err == nil {
		return r.String()
	}
	return ref
}

// Change is one thing Sync did, for the one log line per change.
type Change struct {
	Ref    string
	Action string // "installed", "removed", "kept", "skipped", "failed"
	Detail string
}

func (c Change) String() string { return fmt.Sprintf("%s %s: %s", c.Action, c.Ref, c.Detail) }

// Sync brings the boot directory in step with dockerd's tags: a tag whose
// image carries a kernel gets it installed (again when the tag moved), an
// installed tag that dockerd no longer has loses its directory, except
// the tag of the image that runs now or was last good; then the recorded
// menus are rewritten when anything changed, and the running and last
// good images protected. Entries leave the menus before their files leave
// the boot directory, so no menu ever names a missing kernel.
func (e *Engine) Sync(ctx context.Context) ([]Change, error) {
	return e.sync(ctx, true, false)
}

// Clean is what `dockroot gc --boot-dir` does: Sync without installing
// anything, plus the removal of staging directories an interrupted
// install or removal left (under install's lock, so never a running
// install's). With dryRun it only says what it
// would do.
func (e *Engine) Clean(ctx context.Context, dryRun bool) ([]Change, error) {
	changes, err := e.sync(ctx, false, dryRun)
	if err != nil {
		return changes, err
	}
	left, err := install.RemoveStaging(e.BootDir, dryRun)
	for _, p := range left {
		verb := "removed"
		if dryRun {
			verb = "would remove"
		}
		changes = append(changes, Change{p, verb, "left by an interrupted install or removal"})
	}
	return changes, err
}

func (e *Engine) sync(ctx context.Context, installNew, dryRun bool) ([]Change, error) {
	tags, err := e.Tags(ctx)
	if err != nil {
		return nil, err
	}
	installed, err := bootmenu.ReadInstalled(e.BootDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	booted, err := e.ReadBooted()
	if err != nil {
		return nil, err
	}
	st, err := ReadState(e.BootDir)
	if err != nil {
		return nil, err
	}
	staged := map[string]bool{}
	for _, s := range st.Staged {
		staged[s.ImageID] = true
	}
	if e.noKernel == nil {
		e.noKernel = map[string]bool{}
	}
	var changes []Change
	have := map[string]bool{}
	var gone []bootmenu.Installed
	for _, in := range installed {
		full := fullRef(in.Ref)
		have[full] = true
		id, ok := tags[full]
		switch {
		case !ok && (in.ImageID == booted.ID || in.ImageID == booted.LastGoodID ||
			booted.Ref != "" && fullRef(booted.Ref) == full || booted.LastGood != "" && fullRef(booted.LastGood) == full):
			changes = append(changes, Change{in.Ref, "kept", "dockerd no longer has the tag, but its entry boots the image that runs now or was last good"})
		case !ok && staged[in.ImageID]:
			// docker image prune -a strips all but one tag of an image
			// a container keeps; the next update's pull tags it again.
			changes = append(changes, Change{in.Ref, "kept", "dockerd no longer has the tag, but dockroot update staged its image for the next boot; dockroot update tags it again"})
		case !ok:
			gone = append(gone, in)
		case id != in.ImageID && installNew:
			changes = append(changes, e.installChange(ctx, in.Ref, id))
		}
	}
	if dryRun {
		for _, in := range gone {
			changes = append(changes, Change{in.Ref, "would remove", "dockerd no longer has the tag; its entry and " + filepath.Join(e.BootDir, in.Dir)})
		}
		return changes, e.Protect(ctx, true)
	}
	refs := make([]string, 0, len(tags))
	for ref := range tags {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		id := tags[ref]
		if have[ref] || e.noKernel[id] || !installNew {
			continue
		}
		c := e.installChange(ctx, familiar(ref), id)
		if c.Action == "skipped" {
			e.noKernel[id] = true
			continue // an image without a kernel is no boot entry; not worth a line on every event
		}
		changes = append(changes, c)
	}
	changed := len(gone) > 0
	for _, c := range changes {
		changed = changed || c.Action == "installed"
	}
	if changed {
		var omit []string
		for _, in := range gone {
			omit = append(omit, in.Ref)
		}
		if _, err := e.Menus(ctx, omit...); err != nil {
			return changes, err
		}
		for _, in := range gone {
			changes = append(changes, e.removeInstalled(in))
		}
	}
	if err := e.Protect(ctx, false); err != nil {
		return changes, err
	}
	return changes, nil
}

func (e *Engine) installChange(ctx context.Context, ref, id string) Change {
	res, err := e.Install(ctx, ref)
	switch {
	case errors.Is(err, imagekernel.ErrNoKernel):
		return Change{ref, "skipped", "the image has no kernel"}
	case err != nil:
		return Change{ref, "failed", err.Error()}
	case res.UpToDate:
		return Change{ref, "kept", "up to date"}
	}
	return Change{ref, "installed", fmt.Sprintf("image %s, kernel %s", short(res.ImageID), res.KernelVersion)}
}

// removeInstalled moves a tag's directory into install's staging
// directory (one rename, so it is either installed or not) and deletes
// it there: only the files dockroot wrote; anything else in it stays, and
// so does the directory.
func (e *Engine) removeInstalled(in bootmenu.Installed) Change {
	unlock, err := install.LockBootDir(e.BootDir)
	if err != nil {
		return Change{in.Ref, "failed", err.Error()}
	}
	defer unlock()
	dir := filepath.Join(e.BootDir, in.Dir)
	staging := filepath.Join(e.BootDir, install.StagingDir)
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return Change{in.Ref, "failed", err.Error()}
	}
	tmp, err := os.MkdirTemp(staging, "remove-")
	if err != nil {
		return Change{in.Ref, "failed", err.Error()}
	}
	moved := filepath.Join(tmp, in.Dir)
	if err := os.Rename(dir, moved); err != nil {
		os.Remove(tmp)
		return Change{in.Ref, "failed", err.Error()}
	}
	for _, f := range []string{bootmenu.EntryFile, in.Kernel, in.Initrd} {
		if err := os.Remove(filepath.Join(moved, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Change{in.Ref, "failed", err.Error()}
		}
	}
	if err := os.Remove(moved); err != nil {
		// Files that are not dockroot's: put them back where they were.
		if rerr := os.Rename(moved, dir); rerr != nil {
			e.logf("could not put %s back: %v", dir, rerr)
		}
		os.Remove(tmp)
		return Change{in.Ref, "removed", fmt.Sprintf("entry and kernel removed; %s kept: it holds files dockroot did not write", dir)}
	}
	os.Remove(tmp)
	return Change{in.Ref, "removed", fmt.Sprintf("dockerd no longer has the tag; %s removed", dir)}
}

// familiar is the short form of a full reference ("docker.io/library/desk:1" -> "desk:1").
func familiar(ref string) string {
	if r, ok := strings.CutPrefix(ref, "docker.io/library/"); ok {
		return r
	}
	if r, ok := strings.CutPrefix(ref, "docker.io/"); ok {
		return r
	}
	return ref
}

// short is an image ID as `docker images` shows it.
func short(id string) string {
	h := strings.TrimPrefix(id, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}
