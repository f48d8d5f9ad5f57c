// Package images lists the image tags dockroot can boot, with the kernels
// inside each image, for `dockroot images`: from the store files of
// Docker's (classic and containerd) and Podman's image stores (offline, as the boot reads them) or
// from a running dockerd's API joined with Docker's files. internal/commands parses the flags and prints the rows.
//
// It is host-only: it must not import the boot (hook), internal/commands,
// internal/cli or cmd/…; dockroot-init never links the Docker API client.
package images

import (
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/imagekernel"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/stores"
)

// Row is one tag in `dockroot images` output; its JSON form is the
// --json output.
type Row struct {
	Ref       string    `json:"ref"`      // familiar: "desk:stable"
	FullRef   string    `json:"full_ref"` // normalised: "docker.io/library/desk:stable"
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	Kernels   []string  `json:"kernels"` // versions, newest first
	Modules   []string  `json:"modules"` // the kernels with lib/modules/KVER in the image
	Subvolume string    `json:"subvolume"`
	// Store is the image store kind the image is in (layout.StoreGraphDriver,
	// StoreContainerd, StorePodman). It is empty when Docker's classic
	// store is the only one read, so that the output is what it was
	// before the other stores.
	Store   string `json:"store,omitempty"`
	Problem string `json:"problem,omitempty"`
	// KernelProblems: what makes a kernel boot without its modules
	// (imagekernel.Scan.Problems); the image itself can boot.
	KernelProblems []string `json:"kernel_problems,omitempty"`
}

// Stores says which image stores to read, by host path.
type Stores struct {
	Kind       string // layout.StoreAuto ("" too), StoreGraphDriver, StoreContainerd or StorePodman
	DockerRoot string // absolute host path of Docker's data root
	PodmanRoot string // absolute host path of Podman's graph root
	// ContainerdRoot is the absolute host path of a system containerd's
	// root; Docker's own managed one is found under DockerRoot.
	ContainerdRoot string
}

// Open opens the stores with the host's / as the btrfs top level: only the
// file paths matter off-boot, so this works for any mounted root.
func (s Stores) Open() (snapshot.Store, error) {
	return s.open(s.Kind)
}

func (s Stores) open(kind string) (snapshot.Store, error) {
	return stores.OpenPaths(kind, "/", s.Paths())
}

// Paths are the store roots relative to the host's /.
func (s Stores) Paths() stores.Paths {
	p := stores.Paths{Docker: relative(s.DockerRoot), Podman: relative(s.PodmanRoot)}
	if s.ContainerdRoot != "" {
		p.Containerd = relative(s.ContainerdRoot)
	}
	return p
}

// relative is the host path p below /.
func relative(p string) string {
	rel := strings.TrimPrefix(filepath.Clean(p), "/")
	if rel == "" {
		rel = "."
	}
	return rel
}

// storeImages lists the tagged images in the store files of the data root
// at the host path dockerRoot, Docker's store only: dockerd's API speaks
// for that store alone.
func storeImages(dockerRoot string) ([]snapshot.Image, error) {
	store, err := stores.Open(layout.StoreAuto, "/", relative(dockerRoot))
	if err != nil {
		return nil, err
	}
	return store.List()
}

// List reads the tags from the store files of s.
func List(s Stores) ([]Row, error) {
	store, err := s.Open()
	if err != nil {
		return nil, err
	}
	imgs, err := store.List()
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, img := range imgs {
		r := newRow(img)
		if store.Name() != layout.StoreGraphDriver {
			r.Store = img.Store
		}
		rows = append(rows, r)
	}
	if rows == nil {
		rows = []Row{}
	}
	sortRows(rows)
	return rows, nil
}

// newRow describes img, with the kernels of its root filesystem.
func newRow(img snapshot.Image) Row {
	r := Row{Ref: FamiliarRef(img.Ref), FullRef: img.Ref, ID: img.ID, Created: img.Created, Subvolume: img.Subvolume, Problem: img.Problem,
		Kernels: []string{}, Modules: []string{}}
	if img.Subvolume == "" || img.Problem != "" {
		return r
	}
	scan, err := imagekernel.ScanRoot(filepath.Join("/", img.Subvolume))
	if err != nil {
		r.Problem = err.Error()
		return r
	}
	for _, k := range scan.Kernels {
		r.Kernels = append(r.Kernels, k.Version)
		if k.Modules != "" {
			r.Modules = append(r.Modules, k.Version)
		}
	}
	r.KernelProblems = scan.Problems()
	return r
}

func sortRows(rows []Row) {
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Ref < rows[j].Ref })
}

// FamiliarRef shows "docker.io/library/desk:1" as "desk:1", as docker does.
func FamiliarRef(ref string) string {
	r, err := snapshot.ParseRef(ref)
	if err != nil {
		return ref
	}
	return r.Familiar()
}
