package hook

import (
	"errors"
	"strings"

	"github.com/dockroot/dockroot/internal/freespace"
	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/containerd"
	"github.com/dockroot/dockroot/snapshot/rwlayer"
	"github.com/dockroot/dockroot/snapshot/stores"
	"golang.org/x/sys/unix"
)

// freeSpaceAdvice is what to do about a full filesystem, whichever step
// found it.
const freeSpaceAdvice = "Free space, then boot again: remove images you no longer need (docker image prune, docker rmi), " +
	"old rw layers (dockroot gc, or lower dockroot.keep=), and if `btrfs filesystem df` shows metadata full, " +
	"run `btrfs balance start -dusage=50` on the filesystem; dockroot.onfail=previous boots the existing layer meanwhile"

// advise is the init's one boundary for advice: a failed step's error gets
// what to do next, once, in the terms of where the boot is configured (the
// kernel command line). The libraries below return typed errors that carry
// their operands and no advice (STYLE.md, "Errors"); the host tool gives
// the same errors flag advice at its own boundary.
func advise(err error) error {
	if hint := kernelHint(err); hint != "" {
		return &advisedError{err: err, hint: hint}
	}
	return err
}

// advisedError is an error with the init's advice appended; errors.Is and
// errors.As still see the cause.
type advisedError struct {
	err  error
	hint string
}

func (e *advisedError) Error() string { return e.err.Error() + e.hint }
func (e *advisedError) Unwrap() error { return e.err }

// kernelHint returns the advice for err, starting with its separator, or "".
func kernelHint(err error) string {
	var (
		notFound *snapshot.NotFoundError
		file     *snapshot.StoreFileError
		dataRoot *snapshot.DataRootError
		kind     *stores.UnknownKindError
		both     *stores.AmbiguousError
		name     *rwlayer.NameError
		notOwned *rwlayer.NotOwnedError
		op       *rwlayer.OpError
		platform *containerd.PlatformError
		unpacked *containerd.NotUnpackedError
		db       *containerd.DBError
		blob     *containerd.BlobError
		locked   *containerd.LockedError
	)
	switch {
	case errors.Is(err, freespace.ErrLowSpace):
		return ". " + freeSpaceAdvice
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return "\nthe filesystem is full: what this boot created was removed and nothing else was changed. " + freeSpaceAdvice
	case errors.As(err, &platform):
		return "; dockroot boots the image of the machine it runs on: on the running system, pull that platform's image (docker pull --platform " +
			platform.Want + " " + platform.Ref + ") or set docker_image= to an image built for " + platform.Want
	case errors.As(err, &unpacked) && len(unpacked.UnpackedFor) > 0:
		return "; Docker unpacked it with another snapshotter, which cannot boot: " + containerd.DockerFix
	case errors.As(err, &unpacked):
		return "; on the running system, create a container from it once (docker create " + unpacked.Ref +
			") so that Docker unpacks it with the btrfs snapshotter (docker import leaves an image packed), then boot again"
	case errors.As(err, &locked):
		return "; nothing should hold it before the root is chosen: boot again, and if it stays locked, boot the previous layer (dockroot.onfail=previous)"
	case errors.As(err, &db):
		return "; dockroot only reads it: start Docker on the running system (containerd checks the database), and restore it from a backup or pull the images again if containerd cannot open it either"
	case errors.As(err, &blob) && blob.Missing:
		return "; on the running system, pull or load the image again (docker pull " + blob.Ref + ")"
	case errors.As(err, &file):
		return "; the engine never writes one: put back the file it wrote (from a backup), or remove the image (docker rmi, podman rmi) and pull or build it again"
	case errors.As(err, &notFound) && len(notFound.Available) > 0:
		return "; set docker_image= to one of them"
	case errors.As(err, &notFound):
		return ": build or pull one there first, or set docker_path= to the data root that holds it"
	case errors.As(err, &both):
		return "; set dockroot.store= to the one to boot from (" + strings.Join(both.Stores, " or ") + "), or remove the image from the other"
	case errors.As(err, &dataRoot) && dataRoot.Missing:
		return dataRootHint(err)
	case errors.As(err, &kind):
		return "; set dockroot.store= to one of " + strings.Join(layout.StoreKinds, ", ")
	case errors.As(err, &name):
		return "; choose another rootflags=subvol= name, e.g. rootflags=subvol=docker_rwlayer"
	case errors.As(err, &notOwned) && notOwned.Action != "delete" && !notOwned.Protected:
		return " or choose another rootflags=subvol= name"
	case errors.Is(err, unix.EROFS) && errors.As(err, &op):
		return "; the filesystem is read-only: it was mounted ro, or btrfs forced it read-only after an error " +
			"(see `dmesg`); repair it with `btrfs check` from a rescue system, and boot again"
	}
	return ""
}

// dataRootHint names the parameter of each store root that holds no store:
// docker_path= for Docker's, podman_path= for Podman's (both when
// dockroot.store=auto found neither).
func dataRootHint(err error) string {
	var hints []string
	seen := map[string]bool{}
	for _, e := range dataRootErrors(err) {
		// Two containerd roots (Docker's managed one and a system one)
		// share one parameter: name it once.
		if !e.Missing || seen[e.Kind] {
			continue
		}
		seen[e.Kind] = true
		switch e.Kind {
		case layout.StoreContainerd:
			hints = append(hints, "containerd_path= to a system containerd's root (default "+layout.DefaultContainerdPath+"; Docker's own managed containerd is found under docker_path=)")
		case layout.StorePodman:
			hints = append(hints, "podman_path= to rootful Podman's graph root (default "+layout.DefaultPodmanPath+")")
		default:
			hints = append(hints, "docker_path= to Docker's data root (default "+layout.DefaultDockerPath+")")
		}
	}
	return "; set " + strings.Join(hints, ", or ") + ", relative to the btrfs top level"
}

// dataRootErrors finds every *snapshot.DataRootError in err's tree
// (stores.OpenPaths joins one per store it looked in).
func dataRootErrors(err error) []*snapshot.DataRootError {
	var out []*snapshot.DataRootError
	var walk func(error)
	walk = func(err error) {
		if d, ok := err.(*snapshot.DataRootError); ok {
			out = append(out, d)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			if e := u.Unwrap(); e != nil {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}
