package commands

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/images"
	"github.com/dockroot/dockroot/internal/layout"
)

// Where `dockroot images` learns the tags (--source).
const (
	sourceAuto  = "auto"  // the files: what the boot reads
	sourceFiles = "files" // Docker's store files, offline
	sourceAPI   = "api"   // the daemon's API, for the tags, IDs and dates
)

func imagesVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "images",
		Summary: "list the image tags dockroot can boot, read offline from Docker's and Podman's image stores",
		Usage:   "images [--docker-root DIR] [--containerd-root DIR] [--podman-root DIR] [--store auto|graphdriver|containerd|podman] [--json] [--source auto|files|api] [--host URL]",
		Doc: `Reads the image store files directly (no daemon needed), as the
boot does, and lists every tag with its image ID, when it was created and the
kernels inside it (/boot/vmlinuz-KVER or /usr/lib/modules/KVER/vmlinuz).
An image without a kernel can still boot with a kernel from elsewhere, but
'dockroot install' needs one. The NOTE column says why an image cannot boot,
or which of its kernels lacks its modules.

Needs read access to the data root (normally root) and Docker's btrfs
storage driver; with another driver it explains how to switch.

--store picks the image store: graphdriver (Docker's classic store in its
data root, --docker-root), containerd (Docker's containerd image store, the
Docker 29 default, with containerd's btrfs snapshotter: under
--docker-root/containerd/daemon when dockerd runs its own containerd, or in
--containerd-root when it uses the system's), podman (rootful Podman's
graph root with the btrfs driver, --podman-root) or auto, every one of them
that exists, as the boot's dockroot.store=auto does. When a store other
than the classic one is read a STORE column (and "store" in --json) says
which store each image is in. In the containerd store the IMAGE ID is the
digest of the image's index or manifest, as Docker 29 shows it.

--source api asks the running dockerd (--host, else $DOCKER_HOST, else
unix:///var/run/docker.sock) for the tags, image IDs and creation times
instead; each image's files (and so its kernels) are still read from the
data root, which must be that daemon's. Both sources give the same answer.
The default, auto, reads the files: they are what the boot sees, and they
need no daemon.`,
		Examples: []cli.Example{
			{Command: "images", Doc: "the tags in /var/lib/docker"},
			{Command: "images --docker-root /mnt/var/lib/docker --json", Doc: "another machine's data root, as JSON"},
			{Command: "images --source api --host unix:///run/docker.sock", Doc: "the tags as that dockerd lists them"},
			{Command: "images --store podman --podman-root /srv/containers/storage", Doc: "the tags in a Podman graph root only"},
			{Command: "images --store containerd --json", Doc: "Docker 29's containerd image store, as JSON"},
		},
		Setup: setupImages,
	}
}

func setupImages(fs *flag.FlagSet) func(*Context, []string) error {
	var (
		dockerRoot, source, host string
		podmanRoot, store        string
		containerdRoot           string
		asJSON                   bool
	)
	fs.StringVar(&dockerRoot, "docker-root", "/var/lib/docker", "`DIR` of Docker's data root on this machine")
	storeFlags(fs, &podmanRoot, &containerdRoot, &store)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.StringVar(&source, "source", sourceAuto, "`SOURCE` of the tags: auto (= files), files or api")
	fs.StringVar(&host, "host", "", "with --source api: dockerd's `URL` (default $DOCKER_HOST, else unix:///var/run/docker.sock)")
	return func(ctx *Context, args []string) error {
		if len(args) > 0 {
			return cli.Usagef("unexpected argument %q", args[0])
		}
		if !filepath.IsAbs(dockerRoot) {
			return cli.Usagef("--docker-root %q: give an absolute path", dockerRoot)
		}
		if !filepath.IsAbs(podmanRoot) {
			return cli.Usagef("--podman-root %q: give an absolute path", podmanRoot)
		}
		if !filepath.IsAbs(containerdRoot) {
			return cli.Usagef("--containerd-root %q: give an absolute path", containerdRoot)
		}
		if err := checkStore(store); err != nil {
			return err
		}
		var (
			rows []images.Row
			err  error
		)
		switch source {
		case sourceAuto, sourceFiles:
			if host != "" {
				return cli.Usagef("--host is for --source api")
			}
			rows, err = images.List(images.Stores{Kind: store, DockerRoot: dockerRoot, PodmanRoot: podmanRoot, ContainerdRoot: containerdRoot})
		case sourceAPI:
			if store == layout.StorePodman || store == layout.StoreContainerd {
				return cli.Usagef("--source api reads Docker's classic store: it does not go with --store %s", store)
			}
			if host == "" {
				host = ctx.Getenv("DOCKER_HOST")
			}
			rows, err = images.ListAPI(ctx.Context(), host, dockerRoot)
		default:
			return cli.Usagef("--source %q: want auto, files or api", source)
		}
		if err != nil {
			return err
		}
		if asJSON {
			enc := json.NewEncoder(ctx.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rows)
		}
		return printImages(ctx.Stdout, rows)
	}
}

func printImages(w io.Writer, rows []images.Row) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no tagged images: build or pull one (docker build -t desk:stable .), then run dockroot images again")
		return err
	}
	withStore := false
	for _, r := range rows {
		withStore = withStore || r.Store != ""
	}
	header := []string{"REF", "IMAGE ID", "CREATED", "KERNEL", "NOTE"}
	if withStore {
		header = []string{"REF", "STORE", "IMAGE ID", "CREATED", "KERNEL", "NOTE"}
	}
	table := [][]string{header}
	for _, r := range rows {
		kernel := "-"
		if len(r.Kernels) > 0 {
			kernel = strings.Join(r.Kernels, ",")
		}
		note := r.Problem
		if note == "" {
			note = strings.Join(r.KernelProblems, "; ")
		}
		created := "-"
		if !r.Created.IsZero() {
			created = r.Created.UTC().Format("2006-01-02 15:04")
		}
		row := []string{r.Ref, shortImageID(r.ID), created, kernel, note}
		if withStore {
			row = append([]string{r.Ref, r.Store}, row[1:]...)
		}
		table = append(table, row)
	}
	return writeTable(w, table)
}

// familiarRef shows "docker.io/library/desk:1" as "desk:1", as docker does.
func familiarRef(ref string) string { return images.FamiliarRef(ref) }

// storeFlags adds --podman-root, --containerd-root and --store, shared by
// the verbs that read the image stores.
func storeFlags(fs *flag.FlagSet, podmanRoot, containerdRoot, store *string) {
	fs.StringVar(podmanRoot, "podman-root", "/"+layout.DefaultPodmanPath, "`DIR` of rootful Podman's graph root on this machine (podman info -f '{{.Store.GraphRoot}}')")
	fs.StringVar(containerdRoot, "containerd-root", "/"+layout.DefaultContainerdPath,
		"`DIR` of a system containerd's root, for Docker's containerd image store when dockerd uses that containerd (Docker's own managed one is under --docker-root)")
	fs.StringVar(store, "store", layout.StoreAuto, "the image `STORE`: auto (every one that exists), graphdriver (Docker's classic store), containerd (Docker's containerd image store) or podman")
}

func checkStore(store string) error {
	for _, k := range layout.StoreKinds {
		if store == k {
			return nil
		}
	}
	return cli.Usagef("--store %q: want auto, graphdriver, containerd or podman", store)
}
