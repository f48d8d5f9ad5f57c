// Package snapshot is the image-store contract: what a store is (Store,
// Image), how references are read (ParseRef normalises them exactly as
// Docker does, ParseImageID, ChainID), the typed errors every store returns
// (NotFoundError, DataRootError, StoreFileError and the sentinels), and the
// one safe reader of store files (StoreDirFS, ReadStoreFile: beneath the
// store root, no symlinks, regular files only, capped).
//
// The stores live beside it: snapshot/graphdriver (Docker's classic btrfs
// store) and snapshot/podman (rootful containers/storage with the btrfs
// driver), picked by snapshot/stores; every store passes the behavioural
// suite in snapshot/storetest. The rw layers made from an image are
// snapshot/rwlayer's.
//
// It must not import its stores, the boot (hook), the host tool's packages
// or any daemon client: both binaries link it, PID 1 included. Its errors
// carry their operands and no advice; the boot and the host tool add
// advice at their own edges.
package snapshot
