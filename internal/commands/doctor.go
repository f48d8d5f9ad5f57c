package commands

import (
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/doctor"
	"github.com/dockroot/dockroot/internal/install"
)

func doctorVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "doctor",
		Summary: "check what would stop dockroot from booting an image, with a fix for each problem",
		Usage:   "doctor [--docker-root DIR] [--containerd-root DIR] [--podman-root DIR] [--store auto|graphdriver|containerd|podman] [--image REF] [--toplayer DIR] [--init PATH] [--rwlayer NAME] [--daemon-json FILE] [--storage-conf FILE] [--json]",
		Doc: `Checks, each printed as ok, warn or FAIL with a one-line fix:

  Docker configuration  which store /etc/docker/daemon.json (--daemon-json)
                        gives, and whether it boots (see below)
  Podman configuration  which store /etc/containers/storage.conf
                        (--storage-conf) gives: driver = "btrfs" boots,
                        overlay (Podman's default) and vfs do not
  rootless Podman store of USER
                        a warning for each /home/USER/.local/share/containers/storage
                        holding images: rootless stores keep files under the
                        user's subordinate IDs and cannot boot; copy the image
                        to the rootful store (podman image scp IMAGE root@localhost::)

  storage driver      dockerd keeps images with the btrfs graph driver (not
                      overlay2, not Docker 29's default containerd image store)
  data root on btrfs  the data root's filesystem is btrfs
  free space          at least 1 GiB and 10% free there
  init of IMAGE       the init (--init, default /sbin/init) exists in the image,
                      executable, with its #! interpreter or ELF loader
  kernel of IMAGE     every kernel in the image has its /lib/modules/KVER
  fstab of IMAGE      etc/fstab does not remount / with another subvolume
  top layer ...       with --toplayer: its etc/fstab likewise, and etc/shadow and
                      etc/gshadow owned by root and not world-readable

With a Podman graph root (--podman-root; checked with --store auto when it
exists, always with --store podman), also:

  Podman storage driver       Podman keeps images with the btrfs driver (not
                              overlay, Podman's default)
  Podman graph root on btrfs  the graph root's filesystem is btrfs
  free space for Podman       as above, there

With Docker's containerd image store (checked with --store auto when
daemon.json enables it, when the data root holds only containerd/ as Docker
29 leaves it by default, or when --containerd-root holds a store; always
with --store containerd), instead of the storage driver checks:

  containerd snapshotter      Docker unpacks images with containerd's btrfs
                              snapshotter (not overlayfs, its default), under
                              --docker-root/containerd/daemon or --containerd-root
  containerd root on btrfs    that root's filesystem is btrfs
  free space for containerd   as above, there

Which Docker configuration gives which store: "storage-driver": "btrfs"
alone keeps Docker's classic store (Docker 29 too); adding "features":
{"containerd-snapshotter": true} gives the containerd image store with the
btrfs snapshotter; no driver named gives the containerd store on overlayfs
(Docker 29's default), which cannot boot.

--store graphdriver checks Docker's classic store only, --store containerd
Docker's containerd image store only, --store podman Podman's graph root
only.

Without --image every tagged image is checked. Everything is read offline
from the files; dockerd need not run. The exit code is 1 if any check FAILed.

--json prints {"checks": [{"name", "status", "detail", "fix", "store"}...],
"ok", "warnings", "failed"}, where store names the image store a check is
about (graphdriver, containerd, podman).`,
		Examples: []cli.Example{
			{Command: "doctor", Doc: "check the default data root and every tagged image"},
			{Command: "doctor --image desk:stable --toplayer /mnt/top/boot_docker --rwlayer docker_rwlayer",
				Doc: "one image and the top layer it boots with"},
			{Command: "doctor --docker-root /srv/docker", Doc: "a data root other than /var/lib/docker"},
			{Command: "doctor --store podman", Doc: "rootful Podman's store in /var/lib/containers/storage only"},
			{Command: "doctor --store containerd --containerd-root /var/lib/containerd", Doc: "Docker's containerd image store, with dockerd using the system containerd"},
			{Command: "doctor --json | jq '.checks[] | select(.status != \"ok\")'", Doc: "what is wrong, as JSON"},
		},
		Setup: setupDoctor,
	}
}

func setupDoctor(fs *flag.FlagSet) func(*Context, []string) error {
	var opts doctor.Options
	fs.StringVar(&opts.DockerRoot, "docker-root", install.DefaultDockerRoot, "the Docker data root `DIR` (dockerd --data-root)")
	storeFlags(fs, &opts.PodmanRoot, &opts.ContainerdRoot, &opts.Store)
	fs.StringVar(&opts.Image, "image", "", "check image `REF` only (default: every tagged image)")
	fs.StringVar(&opts.Toplayer, "toplayer", "", "also check the top layer in `DIR` (its files are copied over the image)")
	fs.StringVar(&opts.Init, "init", "/sbin/init", "the init `PATH` the image boots (init=)")
	fs.StringVar(&opts.RWLayer, "rwlayer", "", "the rw layer `NAME` (rootflags=subvol=); an fstab line mounting / with it is fine")
	fs.StringVar(&opts.DaemonJSON, "daemon-json", "/etc/docker/daemon.json", "dockerd's configuration `FILE`, read if it exists (- to ignore)")
	fs.StringVar(&opts.StorageConf, "storage-conf", "/etc/containers/storage.conf", "Podman's storage configuration `FILE`, read if it exists (- to ignore)")
	asJSON := fs.Bool("json", false, "print the checks as JSON")
	opts.Homes = "/home"
	return func(ctx *Context, args []string) error {
		if len(args) > 0 {
			return cli.Usagef("unexpected argument %q (use --image REF)", args[0])
		}
		if err := checkStore(opts.Store); err != nil {
			return err
		}
		if opts.Image == "-" {
			return cli.Usagef("--image %q: give an image reference", opts.Image)
		}
		var err error
		if opts.PodmanRoot, err = filepath.Abs(opts.PodmanRoot); err != nil {
			return err
		}
		if opts.ContainerdRoot, err = filepath.Abs(opts.ContainerdRoot); err != nil {
			return err
		}
		root, err := filepath.Abs(opts.DockerRoot)
		if err != nil {
			return err
		}
		opts.DockerRoot = root
		checks := doctor.Run(opts)
		if *asJSON {
			enc := json.NewEncoder(ctx.Stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(doctorReport{Checks: checks, OK: doctor.Count(checks, doctor.OK),
				Warnings: doctor.Count(checks, doctor.Warn), Failed: doctor.Count(checks, doctor.Fail)}); err != nil {
				return err
			}
		} else {
			doctor.Print(ctx.Stdout, checks)
		}
		if n := doctor.Count(checks, doctor.Fail); n > 0 {
			return fmt.Errorf("%d of %d checks failed; see the fixes above", n, len(checks))
		}
		return nil
	}
}

// doctorReport is doctor --json's object.
type doctorReport struct {
	Checks   []doctor.Check `json:"checks"`
	OK       int            `json:"ok"`
	Warnings int            `json:"warnings"`
	Failed   int            `json:"failed"`
}
