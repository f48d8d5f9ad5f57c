package rwlayer

// Crash safety: what reaches the disk, and in which order.
//
// The guarantees in the Layers documentation must hold after a power cut at
// any instant, not only after an error. Layers gets them from a few btrfs
// properties, with as few flushes as they allow, because every flush is a
// write barrier on the boot's critical path.
//
// What btrfs does (fs/btrfs in Linux):
//
//  1. Every metadata change — creating, renaming or removing a file,
//     renameat2's exchange, a subvolume snapshot or deletion, the extents
//     a reflink shares (FICLONE; it also copies an inline extent straight
//     into the tree) — joins the running transaction. A transaction commit
//     writes all of it atomically, and commits happen in order. For one
//     thread's operations the disk after a crash therefore holds a prefix:
//     all of them up to some commit, none after it. Commits also happen on
//     their own (every 30 s by default, or when memory is short), so the
//     prefix can end anywhere.
//  2. File data written with write(2) or copy_file_range(2) is not in
//     that: btrfs writes it back later (delayed allocation), and a file's
//     on-disk size grows only as its data lands. A commit can hold a new
//     name for a file whose data is not on disk yet; after a crash the file
//     is empty or short. fsync(2) of the file, or syncfs(2), which writes
//     back every dirty file and then commits, puts the data on disk.
//  3. fsync(2) writes the file to the log tree, which mount replays; it
//     can make that one file durable ahead of the transaction. Layers
//     fsyncs only a temporary state file, before renaming it, so a replay
//     can bring back the temporary file (removed as stale by the next
//     save), never a layers.json ahead of the subvolume operations. btrfs
//     also turns any fsync into a full commit once a subvolume was renamed
//     in the running transaction (btrfs_rename: "force full log commit if
//     subvolume involved"); Commit's one fsync comes before its renames.
//  4. BTRFS_IOC_SNAP_CREATE_V2 commits the transaction itself: snapshots
//     are taken inside the commit (create_snapshot queues a pending
//     snapshot and calls btrfs_commit_transaction). When it returns, the
//     snapshot and every metadata change made before it are on disk.
//
// What Layers needs, and where it gets it (a boot: Prepare, the top layer
// into Pending.Path(), Commit):
//
//   - The state file is never empty or half written (ownership of every
//     layer would be lost, and dockroot would refuse to boot). save writes a
//     temporary file and renames it over layers.json only once the data is
//     on disk (2): by fsync of that file, or by a syncfs after writing it.
//     No fsync of the directory: the rename needs no durability of its
//     own, only its place in the order (1).
//   - A subvolume dockroot may rename or delete is provably its own
//     whenever it can exist on disk. Prepare creates the intent marker
//     (an empty file in .dockroot naming the temporary path and the source
//     UUID, layers_intent.go) before the snapshot: a name is metadata, so
//     the snapshot's own commit (4) writes both, and no commit holds the
//     snapshot without the marker (1). Commit records the layer by ID and
//     UUID and removes the marker after that record's rename, so no commit
//     holds the removal without the record. Until then the marker proves
//     the layer, and the next Prepare adopts and deletes one an interrupted
//     boot left.
//   - The new layer is complete before it can be under NAME. Its content is
//     the snapshot (on disk since Prepare) and the top layer. When the top
//     layer wrote only metadata — reflinks from the same btrfs, the default
//     toplayer=, and names, modes, owners, times, xattrs, deletions — every
//     commit that holds the exchange holds all of it (1), and Commit
//     writes no data back first (Pending.MetadataOnly; the boot's top-layer
//     step says so when toplayer.Summary.Copied is 0). When it copied
//     bytes (a top layer on another device), Commit runs syncfs before the
//     exchange: the data is then on disk before any commit can hold the
//     exchange.
//   - The state records the new layer, and marks the current one live,
//     before the exchange, so a commit that holds the exchange finds the
//     displaced layer recorded as one to keep: Commit's first save writes
//     it with an fsync (or within that syncfs) and renames it into place,
//     and the exchange follows in program order (1).
//   - NAME holds a complete layer at every instant, and the old layer is
//     deleted only after the new one is under NAME: the exchange is one
//     renameat2(RENAME_EXCHANGE), and the deletion comes after it in program
//     order, so no commit holds the deletion without the exchange (1).
//   - The state file never claims less than the disk holds: it forgets a
//     layer only when a save finds it gone, which after a Commit's deletion
//     is the next boot's (or settle's, after a syncfs, in recovery and
//     Abort). A record that outlives its subvolume is harmless (ownership
//     needs ID and UUID; the next scan forgets it). Records keep paths and
//     the live flag as the last save saw them; layers are matched by ID and
//     UUID, so names that moved since are found by the scan, not the file.
//
// What Commit leaves to btrfs: when it returns, the exchange, the renames
// and the deletion are in the running transaction, not yet on disk. The
// boot does not wait for them. btrfs commits them within its commit
// interval or at the booted system's first sync, in the background; a
// power cut before that leaves a prefix of the steps above, every one of
// which the next Prepare repairs (the crash tests stop at each step), and
// the previous layer, complete, under NAME meanwhile. Nothing the booted
// system wrote could outlive that commit anyway: its own writes are in the
// same or later transactions. Layers.Sync waits for the commit, for a
// caller that needs it on disk now.
//
// A boot without recovery or adoption thus costs the snapshot's commit
// and one fsync of the state file (plus one syncfs if the top layer copied
// bytes). The first version fsynced the state file and its directory on
// each of four saves — eight flushes, some of them full commits — and
// synced once; the next one fsynced the intent and synced twice in Commit.
//
// The one cost that grows with the image is in the commit after the boot:
// the top layer's first writes into the snapshot copy the tree blocks it
// still shares with the image, and copying a shared block adds a reference
// for every block or extent it points to (btrfs's snapshot-aware
// copy-on-write, btrfs_inc_ref); those delayed references run in the
// commit. A 2 MB image's tree is a leaf or two; a 2 GB image's has full
// nodes of hundreds of pointers on the path to every file the top layer
// writes. It is bounded (a few full nodes per written path), and it is
// btrfs's price for committing any write into a snapshot.
