// Package snapshot finds a Docker image's root filesystem on btrfs and
// manages the read-write layers dockroot boots from.
//
// Two halves, both usable at boot (no daemon, no cgo) and from the host CLI:
//
//   - Stores resolve an image reference ("desk:1", an image ID, …) to the
//     btrfs subvolume that holds the image's complete root filesystem,
//     reading the Docker data root directly. The classic btrfs graph-driver
//     store (NewGraphDriverStore) is the first; every Store must pass the
//     behavioural suite in snapshot/storetest. ParseRef normalises
//     references exactly as Docker does.
//   - Layers snapshot that subvolume into a fresh writable layer and rotate
//     the previous ones, so a crash always leaves a bootable layer.
//
// The boot sequence (package hook) calls OpenStore, Resolve and then
// Layers.Create; the host CLI calls List for menus and error messages.
package snapshot
