package commands

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/internal/install"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/update"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/containerd"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/snapshot/stores"
	"golang.org/x/sys/unix"
)

// advise is the host tool's one boundary for advice: a verb's runtime error
// gets what to do next, once, in the terms of this command line (its flags
// and arguments). The libraries return typed errors with their operands
// and no advice (STYLE.md, "Errors"); the init gives the same errors
// kernel-parameter advice at its own boundary (package hook).
func advise(verb string, err error) string {
	return err.Error() + flagHint(verb, err)
}

// flagHint returns the advice for err, starting with its separator, or "".
func flagHint(verb string, err error) string {
	var (
		notFound *snapshot.NotFoundError
		file     *snapshot.StoreFileError
		dataRoot *snapshot.DataRootError
		kind     *stores.UnknownKindError
		both     *stores.AmbiguousError
		name     *rwlayer.NameError
		notOwned *rwlayer.NotOwnedError
		none     *bootmenu.NoneInstalledError
		noMenu   *update.MenuNotRecordedError
		daemon   *update.DaemonError
		initrd   *install.ImageInitramfsError
		platform *containerd.PlatformError
		unpacked *containerd.NotUnpackedError
		db       *containerd.DBError
		blob     *containerd.BlobError
		locked   *containerd.LockedError
	)
	switch {
	case errors.As(err, &none):
		return fmt.Sprintf(": install one per image tag first, e.g. `dockroot install desk:stable --boot-dir %s`, then run %s again", none.BootDir, verb)
	case errors.As(err, &noMenu):
		return fmt.Sprintf(": run `dockroot menu --bootloader %s --boot-dir %s ... -o FILE` once; update and watch rewrite that menu from then on", noMenu.Bootloader, noMenu.BootDir)
	case errors.As(err, &daemon):
		return "; is dockerd running (systemctl status docker)? Or pass --docker-host with its socket"
	case errors.As(err, &initrd) && initrd.File == "":
		return "; build it in the image's Dockerfile with the distribution's generator after installing dockroot's package " +
			"(Debian: RUN update-initramfs -c -k " + initrd.KernelVersion + "), or leave out --initramfs image to have dockroot build its own"
	case errors.As(err, &initrd) && initrd.Err == nil:
		return "; install dockroot's package in the image before its generator builds the initramfs " +
			"(Debian: RUN apt-get install -y ./dockroot_VERSION_amd64.deb && update-initramfs -u -k " + initrd.KernelVersion +
			"), build the image again, or leave out --initramfs image to have dockroot build its own"
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT), errors.Is(err, freespace.ErrLowSpace):
		return "; the filesystem is full: free space (docker image prune, dockroot gc) and run dockroot " + verb + " again"
	case errors.As(err, &platform):
		return "; dockroot boots the image of this machine's platform: pull it (docker pull --platform " + platform.Want + " " + platform.Ref +
			") or give an image built for " + platform.Want
	case errors.As(err, &unpacked) && len(unpacked.UnpackedFor) > 0:
		return "; Docker unpacked it with another snapshotter, which cannot boot: " + containerd.DockerFix
	case errors.As(err, &unpacked):
		return "; create a container from it once (docker create " + unpacked.Ref + ", then docker rm) so that Docker unpacks it with the btrfs snapshotter (docker import leaves an image packed), and run dockroot " + verb + " again"
	case errors.As(err, &locked):
		return "; stop what holds it (systemctl stop docker containerd) or run dockroot " + verb + " again"
	case errors.As(err, &db):
		return "; dockroot only reads it: check that Docker still lists its images (docker images), and restore the database from a backup or pull the images again if not"
	case errors.As(err, &blob) && blob.Missing:
		return "; pull or load the image again (docker pull " + blob.Ref + ")"
	case errors.As(err, &file):
		return "; the engine never writes one: put back the file it wrote (from a backup), or remove the image (docker rmi, podman rmi) and pull or build it again"
	case errors.As(err, &notFound) && len(notFound.Available) > 0:
		return "; give one of them as the image reference"
	case errors.As(err, &notFound):
		return ": build or pull one there first (docker images and podman images list what each engine has), or pass --docker-root or --podman-root of the store that has it"
	case errors.As(err, &both):
		return "; pass --store " + strings.Join(both.Stores, " or --store ")
	case errors.As(err, &dataRoot) && dataRoot.Missing && dataRoot.Kind == layout.StoreContainerd:
		return "; pass --containerd-root with a system containerd's root (containerd config dump | grep ^root), or --docker-root with the data root whose containerd/daemon holds Docker's own"
	case errors.As(err, &dataRoot) && dataRoot.Missing && dataRoot.Kind == layout.StorePodman:
		return "; pass --podman-root with Podman's graph root (podman info -f '{{.Store.GraphRoot}}')"
	case errors.As(err, &dataRoot) && dataRoot.Missing:
		return "; pass --docker-root with dockerd's data root (docker info -f '{{.DockerRootDir}}')"
	case errors.As(err, &kind):
		return "; the image store kinds are listed by dockroot " + verb + " --help"
	case errors.As(err, &name):
		return "; choose another --rwlayer"
	case errors.As(err, &notOwned) && notOwned.Action != "delete" && !notOwned.Protected:
		return " or choose another --rwlayer"
	case errors.Is(err, unix.EROFS):
		return "; the filesystem is read-only: remount it read-write (mount -o remount,rw) and run dockroot " + verb + " again"
	}
	return ""
}
