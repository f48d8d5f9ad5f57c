// Package hook is the run half of dockroot's boot: the sequence that
// dockroot-init (PID 1 in the initramfs, cmd/dockroot-init) runs to boot a
// Docker image as the root filesystem. Its build half, the initramfs
// builder, is hook/initramfs; the init binary never imports it.
//
// Boot runs named Steps, each logged as starting, done in N ms or failed,
// to /dev/kmsg and the console (KmsgLogger):
//
//  1. mount the pseudo filesystems (/dev, /proc, /sys, /run);
//  2. read the configuration (/proc/cmdline, /etc/dockroot.json and the
//     ancestor's /etc/docker-btrfs.json);
//  3. load kernel modules (optional);
//  4. wait for the root device;
//  5. check for a hibernation image on the resume device, and ask the
//     kernel to resume it (before anything mounts the filesystem);
//  6. mount the btrfs top level (subvolid=5) on /run/dockroot/top
//     (read-only only for dockroot.layer=current|previous with ro on a
//     device that refuses writes);
//  7. choose the rw layer: a fresh one, or an existing one as it was left
//     (dockroot.layer=previous or current, or a hibernation image);
//  8. resolve the image in Docker's store;
//  9. count the boot (dockroot.tries=), falling back to the last good
//     image after too many boots without `dockroot mark-good`;
//  10. check the free space;
//  11. find the top layer (mounting its device), and the prepared base
//     of this image and top layer if one was kept (rwlayer.Bases);
//  12. create the rw layer (a snapshot of the base, else of the image,
//     under a temporary name);
//  13. apply the top layer (unless the layer came from a base) and keep
//     the result as the next boot's base, find the image's init in the
//     new layer, then commit the rw layer (rotate): a layer without init
//     never replaces the previous one;
//  14. mount the new root (subvol=NAME) on /newroot;
//  15. record the boot in /run/dockroot/boot.json;
//  16. switch_root into the image's init.
//
// Steps 8 to 13 make the fresh layer (Step.Fresh): they are skipped when
// an existing layer boots.
//
// Everything outside the sequence's own logic is a field of Env, so the
// sequence runs in unit tests against fakes and temporary directories.
// Boot returns a *BootError; what it means (shell, reboot, power off) is
// decided by main through Failsafe. dockroot.onfail=previous is handled
// inside Boot, since only the sequence knows which layer is safe to boot.
package hook
