// Package images lists the image tags dockroot can boot, with the kernels
// inside each image, for `dockroot images`: from Docker's store files
// (offline, as the boot reads them) or from a running dockerd's API joined
// with those files. internal/commands parses the flags and prints the rows.
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
	Problem   string    `json:"problem,omitempty"`
	// KernelProblems: what makes a kernel boot without its modules
	// (imagekernel.Scan.Problems); the image itself can boot.
	KernelProblems []string `json:"kernel_problems,omitempty"`
}

// storeImages lists the tagged images in the store files of the data root
// at the host path dockerRoot: the store takes a btrfs top level and a
// path below it, and "/" with the rest works for any mounted data root,
// since only the file paths matter off-boot.
func storeImages(dockerRoot string) ([]snapshot.Image, error) {
	rel := strings.TrimPrefix(filepath.Clean(dockerRoot), "/")
	if rel == "" {
		rel = "."
	}
	store, err := stores.Open(layout.StoreAuto, "/", rel)
	if err != nil {
		return nil, err
	}
	return store.List()
}

// List reads the tags from the store files at dockerRoot.
func List(dockerRoot string) ([]Row, error) {
	imgs, err := storeImages(dockerRoot)
	if err != nil {
		return nil, err
	}
	rows := make([]Row, 0, len(imgs))
	for _, img := range imgs {
		rows = append(rows, newRow(img))
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
