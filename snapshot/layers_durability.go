package snapshot

// Crash safety: what reaches the disk, and in which order.
//
// The guarantees in the Layers documentation must hold after a power cut at
// any instant, not only after an error. Layers gets them from a few btrfs
// properties, with as few flushes as they allow, because every flush is a
// write barrier on the boot's critical path.
//
// What btrfs does (fs/btrfs in Linux):
//
//  1. Every metadata change — creating or renaming a file, renameat2's
//     exchange, a subvolume snapshot or deletion, the extents a reflink
//     shares — joins the running transaction. A transaction commit writes
//     all of it atomically, and commits happen in order. For one thread's
//     operations the disk after a crash therefore holds a prefix: all of
//     them up to some commit, none after it.
//  2. File data written with write(2) is not in that: btrfs writes it back
//     later (delayed allocation), and a file's on-disk size grows only as
//     its data lands. A commit can hold a new name for a file whose data is
//     not on disk yet; after a crash the file is empty or short. fsync(2) of
//     the file, or syncfs(2), which writes back every dirty file and then
//     commits, puts the data on disk.
//  3. fsync(2) writes the file to the log tree, which mount replays; it
//     can make that one file durable ahead of the transaction. Layers
//     fsyncs only a temporary state file, before renaming it, so a replay
//     can bring back the temporary file (removed as stale by the next
//     save), never a layers.json ahead of the subvolume operations. btrfs
//     also turns any fsync into a full commit once a subvolume was renamed
//     in the running transaction (btrfs_rename: "force full log commit if
//     subvolume involved").
//  4. BTRFS_IOC_SNAP_CREATE_V2 commits the transaction itself: snapshots
//     are taken inside the commit (create_snapshot queues a pending
//     snapshot and calls btrfs_commit_transaction). When it returns, the
//     snapshot and everything done before it are on disk.
//
// What Layers needs, and where it gets it (a boot: Prepare, the top layer
// into Pending.Path(), Commit):
//
//   - The state file is never empty or half written (ownership of every
//     layer would be lost, and dockroot would refuse to boot). save writes a
//     temporary file and renames it over layers.json only once the data is
//     on disk (2): by fsync of that file, or, in Commit, by the syncfs that
//     commits the new layer. No fsync of the directory: the rename needs no
//     durability of its own, only its place in the order (1).
//   - A subvolume dockroot may rename or delete is provably its own
//     whenever it can exist on disk. Prepare saves the intent (temporary
//     name, source UUID) before the snapshot; the snapshot's own commit (4)
//     writes both. The new layer is recorded by ID and UUID in Commit's
//     first save; until then the intent proves it, and the next Prepare
//     adopts and deletes a layer an interrupted boot left.
//   - The new layer is complete before it can be under NAME. Commit's first
//     save runs syncfs between writing the state and renaming it: the top
//     layer's files (data written back, whether reflinked or copied) and the
//     state — the new layer recorded, the current one marked live, so a
//     crash after the exchange keeps it as the newest previous layer — are
//     on disk before the exchange, which follows in a later transaction (1).
//   - NAME holds a complete layer at every instant, and the old layer is
//     deleted only after the new one is under NAME: the exchange is one
//     renameat2(RENAME_EXCHANGE), and the deletion comes after it in program
//     order, so no commit holds the deletion without the exchange (1).
//   - The state file never claims less than the disk holds: it forgets a
//     deleted layer only in settle, after a syncfs made the deletion durable.
//     A record that outlives its subvolume is harmless (ownership needs ID
//     and UUID; the next scan forgets it).
//   - When Commit returns, the boot's switch is durable: settle's syncfs
//     after the last step. The save that follows (paths, forgotten layers)
//     reaches the disk with the next commit; if a crash loses it, the
//     previous state still describes every layer correctly.
//
// A boot without recovery or adoption thus costs one fsync (the intent),
// the snapshot's commit, two syncfs and one fsync (the final state). The
// first version fsynced the state file and its directory on each of four
// saves — eight flushes, some of them full commits — and synced once.
//
// The one cost that grows with the image: the syncfs before the exchange
// commits the top layer's writes into the snapshot. The first write to a
// tree block the snapshot still shares with the image copies the block and
// adds a reference for every block or extent it points to (btrfs's
// snapshot-aware copy-on-write, btrfs_inc_ref); those delayed references
// run in the commit. A 2 MB image's tree is a leaf or two; a 2 GB image's
// has full nodes of hundreds of pointers on the path to every file the top
// layer writes. It is bounded (a few full nodes per written path) and it is
// btrfs's price for committing any write into a snapshot: skipping the
// sync would only move it to the first commit after the boot, and lose the
// guarantee that the layer under NAME is complete.
