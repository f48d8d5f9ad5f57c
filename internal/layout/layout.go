// Package layout names the places and defaults that the init and the host
// tool share: where dockroot keeps its state on the btrfs top level, where
// the initramfs builder puts the module list the init reads, where the init
// records the boot, and the image store kinds. Each such name is defined here
// once, so the two binaries cannot drift apart.
//
// It is a leaf: it imports nothing of dockroot's, and holds names, not code.
package layout

// On the btrfs top level (subvolid=5), relative to it.
const (
	// StateDir is dockroot's own directory: the layer ownership record
	// (layers.json), the boot-count state (state.json), intent markers
	// and prepared bases. Nothing outside it is dockroot's unless that
	// record says so.
	StateDir = ".dockroot"

	// BasesDir holds the prepared bases (read-only image + top-layer
	// snapshots).
	BasesDir = StateDir + "/bases"

	// PrevInfix, TmpSuffix, AdoptedSuffix and FailedSuffix make the names
	// beside the rw layer NAME: NAME.prev.N is the N-th newest previous
	// layer, and NAME.dockroot-tmp a layer being prepared (or one
	// displaced by an interrupted commit). dockroot renames and deletes
	// these, so no other setting may name them.
	PrevInfix = ".prev."
	TmpSuffix = ".dockroot-tmp"
	// AdoptedSuffix: NAME.adopted is the ancestor hook's layer once a new
	// layer replaced it, kept outside the rotation until `dockroot gc
	// --adopted`.
	AdoptedSuffix = ".adopted"
	// FailedSuffix: NAME.failed is the layer of the last boot of an image
	// on trial (not yet marked good) once a new layer replaced it, kept
	// outside the rotation so that NAME.prev.1 stays the layer of the
	// last good boot. Each such replacement replaces it.
	FailedSuffix = ".failed"

	// DefaultDockerPath is Docker's data root when docker_path= is not
	// given: Docker's default /var/lib/docker on a filesystem mounted at /.
	DefaultDockerPath = "var/lib/docker"

	// DefaultPodmanPath is the rootful Podman (containers/storage) graph
	// root when podman_path= is not given: its default
	// /var/lib/containers/storage on a filesystem mounted at /.
	DefaultPodmanPath = "var/lib/containers/storage"

	// DefaultContainerdPath is a system containerd's root when
	// containerd_path= is not given: containerd's default
	// /var/lib/containerd on a filesystem mounted at /. dockerd uses it
	// when started with --containerd=/run/containerd/containerd.sock, as
	// Docker's usual systemd unit does.
	DefaultContainerdPath = "var/lib/containerd"

	// DockerContainerdDir is the root of the containerd that dockerd
	// starts and manages itself, relative to Docker's data root
	// (docker_path=).
	DockerContainerdDir = "containerd/daemon"
)

// Image store kinds, as dockroot.store= and the host tool's --store name
// them.
const (
	StoreAuto        = "auto"        // every store that exists under docker_path=, containerd_path= and podman_path=
	StoreGraphDriver = "graphdriver" // Docker's classic btrfs graph driver
	StoreContainerd  = "containerd"  // Docker's containerd image store with containerd's btrfs snapshotter
	StorePodman      = "podman"      // Podman's containers/storage with the btrfs driver
)

// StoreKinds lists the accepted store kinds, StoreAuto first.
var StoreKinds = []string{StoreAuto, StoreGraphDriver, StoreContainerd, StorePodman}

// In the initramfs and in the booted system.
const (
	// ModulesList is the module list the initramfs builder writes and the
	// init loads, relative to the initramfs root.
	ModulesList = "etc/dockroot/modules.list"

	// ModulesTable is the module table (aliases, dependencies and soft
	// dependencies of the packed modules, format in package kmod) the
	// initramfs builder writes beside the list and the init matches
	// devices against, relative to the initramfs root. Without it the
	// init loads the whole list.
	ModulesTable = "etc/dockroot/modules.table"

	// DockrootJSON and DockerBtrfsJSON are the configuration files the
	// initramfs builder bakes in and the init reads, relative to the
	// initramfs root: dockroot's own, and the ancestor's.
	DockrootJSON    = "etc/dockroot.json"
	DockerBtrfsJSON = "etc/docker-btrfs.json"

	// RunDir is the init's directory on /run, which switch_root carries
	// into the booted system.
	RunDir = "/run/dockroot"

	// BootRecord is the boot record (package bootrecord) the init writes
	// and the host tool's status, mark-good, retry and gc read.
	BootRecord = RunDir + "/boot.json"
)
