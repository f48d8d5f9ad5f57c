package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/snapshot"
)

func init() {
	app.Register(&cli.Verb{
		Name:    "images",
		Summary: "list the image tags dockroot can boot, read offline from Docker's data root",
		Usage:   "images [--docker-root DIR] [--json]",
		Doc: `Reads Docker's image store files directly (no daemon needed), as the
boot does, and lists every tag with its image ID, when it was created and the
kernels inside it (/boot/vmlinuz-KVER or /usr/lib/modules/KVER/vmlinuz).
An image without a kernel can still boot with a kernel from elsewhere, but
'dockroot install' needs one. The NOTE column says why an image cannot boot.

Needs read access to the data root (normally root) and Docker's btrfs
storage driver; with another driver it explains how to switch.`,
		Examples: []cli.Example{
			{Command: "images", Doc: "the tags in /var/lib/docker"},
			{Command: "images --docker-root /mnt/var/lib/docker --json", Doc: "another machine's data root, as JSON"},
		},
		Setup: setupImages,
	})
}

// imageRow is one tag in `dockroot images` output; its JSON form is the
// --json output.
type imageRow struct {
	Ref       string    `json:"ref"`      // familiar: "desk:stable"
	FullRef   string    `json:"full_ref"` // normalised: "docker.io/library/desk:stable"
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	Kernels   []string  `json:"kernels"` // versions, oldest first
	Modules   []string  `json:"modules"` // the kernels with lib/modules/KVER in the image
	Subvolume string    `json:"subvolume"`
	Problem   string    `json:"problem,omitempty"`
}

func setupImages(fs *flag.FlagSet) func(*Context, []string) error {
	var (
		dockerRoot string
		asJSON     bool
	)
	fs.StringVar(&dockerRoot, "docker-root", "/var/lib/docker", "`DIR` of Docker's data root on this machine")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return func(ctx *Context, args []string) error {
		if len(args) > 0 {
			return cli.Usagef("unexpected argument %q", args[0])
		}
		if !filepath.IsAbs(dockerRoot) {
			return cli.Usagef("--docker-root %q: give an absolute path", dockerRoot)
		}
		rows, err := listImages(dockerRoot)
		if err != nil {
			return err
		}
		if asJSON {
			if rows == nil {
				rows = []imageRow{}
			}
			enc := json.NewEncoder(ctx.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rows)
		}
		return printImages(ctx.Stdout, rows)
	}
}

// listImages reads the store at the host path dockerRoot: the store takes
// a btrfs top level and a path below it, and "/" with the rest works for
// any mounted data root, since only the file paths matter off-boot.
func listImages(dockerRoot string) ([]imageRow, error) {
	rel := strings.TrimPrefix(filepath.Clean(dockerRoot), "/")
	if rel == "" {
		rel = "."
	}
	store, err := snapshot.OpenStore(snapshot.KindAuto, "/", rel)
	if err != nil {
		return nil, err
	}
	imgs, err := store.List()
	if err != nil {
		return nil, err
	}
	rows := make([]imageRow, 0, len(imgs))
	for _, img := range imgs {
		r := imageRow{Ref: familiarRef(img.Ref), FullRef: img.Ref, ID: img.ID, Created: img.Created, Subvolume: img.Subvolume, Problem: img.Problem,
			Kernels: []string{}, Modules: []string{}}
		if img.Subvolume != "" && img.Problem == "" {
			ks, err := bootmenu.FindKernels(filepath.Join("/", img.Subvolume))
			if err != nil {
				r.Problem = err.Error()
			}
			for _, k := range ks {
				r.Kernels = append(r.Kernels, k.Version)
				if k.Modules {
					r.Modules = append(r.Modules, k.Version)
				}
			}
		}
		rows = append(rows, r)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Ref < rows[j].Ref })
	return rows, nil
}

func printImages(w io.Writer, rows []imageRow) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no tagged images: build or pull one (docker build -t desk:stable .), then run dockroot images again")
		return err
	}
	table := [][]string{{"REF", "IMAGE ID", "CREATED", "KERNEL", "NOTE"}}
	for _, r := range rows {
		kernel := "-"
		if len(r.Kernels) > 0 {
			kernel = strings.Join(r.Kernels, ",")
		}
		note := r.Problem
		if note == "" && len(r.Kernels) > 0 && len(r.Modules) < len(r.Kernels) {
			var paths []string
			for _, k := range missing(r.Kernels, r.Modules) {
				paths = append(paths, "lib/modules/"+k+"/modules.dep")
			}
			note = "no " + strings.Join(paths, ", ") + ": modules will not load"
		}
		created := "-"
		if !r.Created.IsZero() {
			created = r.Created.UTC().Format("2006-01-02 15:04")
		}
		table = append(table, []string{r.Ref, shortImageID(r.ID), created, kernel, note})
	}
	return writeTable(w, table)
}

// familiarRef shows "docker.io/library/desk:1" as "desk:1", as docker does.
func familiarRef(ref string) string {
	r, err := snapshot.ParseRef(ref)
	if err != nil {
		return ref
	}
	return r.Familiar()
}

func missing(all, have []string) []string {
	ok := map[string]bool{}
	for _, h := range have {
		ok[h] = true
	}
	var out []string
	for _, a := range all {
		if !ok[a] {
			out = append(out, a)
		}
	}
	return out
}
