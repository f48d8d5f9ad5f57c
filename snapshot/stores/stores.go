// Package stores opens the image stores dockroot can boot from: it knows
// every kind (snapshot/graphdriver for Docker's classic store,
// snapshot/containerd for Docker's containerd image store, snapshot/podman
// for Podman) and, for dockroot.store=auto, looks in each that exists at
// its path. The
// boot and the host tool call Open or OpenPaths; the stores themselves
// never import this package.
//
// It must not import the boot (hook), the host tool's packages or any
// daemon client: the init links it.
package stores

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/containerd"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
	"github.com/dockroot/dockroot/snapshot/podman"
)

// UnknownKindError is a store kind that no store has.
type UnknownKindError struct{ Kind string }

func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("unknown image store kind %q (known: %v)", e.Kind, layout.StoreKinds)
}

// AmbiguousError says that Ref names an image in more than one store, so
// dockroot.store=auto cannot choose: Stores are their kinds
// (layout.StoreGraphDriver, layout.StorePodman), Images what each resolved
// Ref to, in the same order.
type AmbiguousError struct {
	Ref    string
	Stores []string
	Images []*snapshot.Image
}

func (e *AmbiguousError) Error() string {
	var each []string
	for i, k := range e.Stores {
		each = append(each, fmt.Sprintf("%s (%s, image %s)", k, e.Images[i].Ref, e.Images[i].ID))
	}
	return fmt.Sprintf("image %q is in more than one image store: %s", e.Ref, strings.Join(each, " and "))
}

// Paths are the roots of the stores, relative to the btrfs top level.
type Paths struct {
	Docker string // Docker data root; "" is layout.DefaultDockerPath
	Podman string // Podman graph root; "" is layout.DefaultPodmanPath
	// Containerd is a system containerd's root; "" is
	// layout.DefaultContainerdPath. The containerd that dockerd manages
	// itself, under Docker's data root (layout.DockerContainerdDir), is
	// looked in as well.
	Containerd string
	// Containerd tunes how containerd's databases are read (the lock
	// timeout); zero is the package's defaults.
	ContainerdOptions containerd.Options
}

func (p Paths) withDefaults() Paths {
	if p.Docker == "" {
		p.Docker = layout.DefaultDockerPath
	}
	if p.Podman == "" {
		p.Podman = layout.DefaultPodmanPath
	}
	if p.Containerd == "" {
		p.Containerd = layout.DefaultContainerdPath
	}
	return p
}

// ContainerdRoots are the places a containerd root of Docker's may be,
// relative to the btrfs top level, in the order they are looked in: the
// containerd dockerd manages itself (under the data root), then a system
// containerd's (containerd_path=).
func (p Paths) ContainerdRoots() []string {
	p = p.withDefaults()
	managed := path.Join(p.Docker, layout.DockerContainerdDir)
	if managed == path.Clean(p.Containerd) {
		return []string{managed}
	}
	return []string{managed, path.Clean(p.Containerd)}
}

// Open opens the store kind with the Docker data root dockerPath, as
// before Podman support: layout.StoreAuto looks at the Docker data root
// only, and layout.StorePodman opens Podman's default graph root. Callers
// that know a Podman graph root (podman_path=) call OpenPaths.
func Open(kind, top, dockerPath string) (snapshot.Store, error) {
	return openPaths(kind, top, Paths{Docker: dockerPath}, false)
}

// OpenPaths opens the image store kind with the roots p, relative to top,
// where the btrfs top level is mounted. Nothing but the stores' presence is
// checked here.
//
// layout.StoreAuto (or "") uses every store that exists at its path
// (containerd's only when the Docker data root holds no classic store): one
// alone is returned as it is; with both, Resolve looks in each, and a
// reference found in both is an *AmbiguousError, one found in neither a
// *snapshot.NotFoundError listing the tags of both. When neither path holds
// a store dockroot can read, the error joins both stores'
// *snapshot.DataRootError, a store that is there but unreadable (another
// storage driver) first, so that errors.As finds it.
func OpenPaths(kind, top string, p Paths) (snapshot.Store, error) {
	return openPaths(kind, top, p, true)
}

func openPaths(kind, top string, p Paths, autoPodman bool) (snapshot.Store, error) {
	s, err := openKind(kind, top, p, autoPodman)
	if err != nil {
		return nil, err
	}
	if _, ok := s.(*multiStore); ok {
		return s, nil
	}
	return kindStore{s}, nil
}

// kindStore sets Image.Store to its store's kind.
type kindStore struct{ snapshot.Store }

func (k kindStore) Resolve(ref string) (*snapshot.Image, error) {
	img, err := k.Store.Resolve(ref)
	if img != nil && img.Store == "" {
		img.Store = k.Name()
	}
	return img, err
}

func (k kindStore) List() ([]snapshot.Image, error) {
	l, err := k.Store.List()
	for i := range l {
		if l[i].Store == "" {
			l[i].Store = k.Name()
		}
	}
	return l, err
}

func openKind(kind, top string, p Paths, autoPodman bool) (snapshot.Store, error) {
	p = p.withDefaults()
	switch kind {
	case layout.StoreGraphDriver:
		return graphdriver.New(top, p.Docker), nil
	case layout.StorePodman:
		return podman.New(top, p.Podman), nil
	case layout.StoreContainerd:
		return openContainerd(top, p)
	case layout.StoreAuto, "":
	default:
		return nil, &UnknownKindError{Kind: kind}
	}
	type candidate struct {
		detect error
		store  snapshot.Store
	}
	dockerRoot, podmanRoot := filepath.Join(top, p.Docker), filepath.Join(top, p.Podman)
	classic := graphdriver.Detect(snapshot.StoreDirFS(dockerRoot), dockerRoot)
	candidates := []candidate{{classic, graphdriver.New(top, p.Docker)}}
	if autoPodman {
		// A Docker data root with the classic store means Docker keeps its
		// images there: its own containerd (and a system containerd it
		// talks to) then holds none in the moby namespace, and opening
		// their databases would only wait on containerd's lock. The
		// containerd store is looked at when there is no classic store;
		// dockroot.store=containerd (--store containerd) picks it anyway.
		roots := p.ContainerdRoots()
		if classic == nil {
			roots = nil
		}
		for _, root := range roots {
			full := filepath.Join(top, root)
			candidates = append(candidates, candidate{containerd.Detect(snapshot.StoreDirFS(full), full), containerd.New(top, root, p.ContainerdOptions)})
		}
		candidates = append(candidates, candidate{podman.Detect(snapshot.StoreDirFS(podmanRoot), podmanRoot), podman.New(top, p.Podman)})
	}
	var found []snapshot.Store
	var errs []error
	for _, c := range candidates {
		if c.detect == nil {
			found = append(found, kindStore{c.store})
		} else {
			errs = append(errs, c.detect)
		}
	}
	switch len(found) {
	case 0:
		// A store that is there but unreadable says more than a path
		// with nothing at it: put it first, for errors.As.
		sort.SliceStable(errs, func(i, j int) bool { return !isMissing(errs[i]) && isMissing(errs[j]) })
		if len(errs) == 1 {
			return nil, errs[0]
		}
		return nil, &joinedError{errs: errs}
	case 1:
		return found[0], nil
	}
	return &multiStore{stores: found}, nil
}

// openContainerd opens the containerd store for dockroot.store=containerd:
// the Docker-managed containerd's root when it holds one, else the system
// containerd's, else both roots' errors.
func openContainerd(top string, p Paths) (snapshot.Store, error) {
	var found []snapshot.Store
	var errs []error
	for _, root := range p.ContainerdRoots() {
		full := filepath.Join(top, root)
		if err := containerd.Detect(snapshot.StoreDirFS(full), full); err != nil {
			errs = append(errs, err)
			continue
		}
		found = append(found, kindStore{containerd.New(top, root, p.ContainerdOptions)})
	}
	switch len(found) {
	case 0:
		sort.SliceStable(errs, func(i, j int) bool { return !isMissing(errs[i]) && isMissing(errs[j]) })
		if len(errs) == 1 {
			return nil, errs[0]
		}
		return nil, &joinedError{errs: errs}
	case 1:
		return found[0], nil
	}
	return &multiStore{stores: found}, nil
}

// joinedError is errors.Join on one line: the boot and the CLI print an
// error as one line.
type joinedError struct{ errs []error }

func (e *joinedError) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; and ")
}

func (e *joinedError) Unwrap() []error { return e.errs }

func isMissing(err error) bool {
	var dr *snapshot.DataRootError
	return errors.As(err, &dr) && dr.Missing
}

// multiStore is dockroot.store=auto over more than one store.
type multiStore struct{ stores []snapshot.Store }

// Name is layout.StoreAuto: the image may come from either store; the
// boot records the store in the image's subvolume path.
func (m *multiStore) Name() string { return layout.StoreAuto }

func (m *multiStore) Resolve(ref string) (*snapshot.Image, error) {
	var (
		imgs  []*snapshot.Image
		kinds []string
		nfs   []*snapshot.NotFoundError
	)
	for _, s := range m.stores {
		img, err := s.Resolve(ref)
		var nf *snapshot.NotFoundError
		switch {
		case err == nil:
			imgs, kinds = append(imgs, img), append(kinds, s.Name())
		case errors.As(err, &nf):
			nfs = append(nfs, nf)
		default:
			// A store that cannot answer (corrupt, unreadable, an invalid
			// reference) may hold the image: never guess past it.
			return nil, err
		}
	}
	switch len(imgs) {
	case 1:
		return imgs[0], nil
	case 0:
	default:
		return nil, &AmbiguousError{Ref: strings.TrimSpace(ref), Stores: kinds, Images: imgs}
	}
	out := &snapshot.NotFoundError{Ref: nfs[0].Ref, Available: []string{}}
	var where, hints []string
	for _, nf := range nfs {
		where = append(where, nf.Store)
		out.Available = append(out.Available, nf.Available...)
		if nf.Hint != "" {
			hints = append(hints, nf.Hint)
		}
	}
	sort.Strings(out.Available)
	out.Store = strings.Join(where, " or ")
	out.Hint = strings.Join(hints, "; ")
	return nil, out
}

// List lists every store's images, sorted by Ref (a reference in two stores
// is listed twice, each with its own subvolume).
func (m *multiStore) List() ([]snapshot.Image, error) {
	var out []snapshot.Image
	for _, s := range m.stores {
		l, err := s.List()
		if err != nil {
			return nil, err
		}
		out = append(out, l...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}
