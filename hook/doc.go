// Package hook is the run half of dockroot's boot: the sequence that
// dockroot-init (PID 1 in the initramfs, cmd/dockroot-init) runs to boot a
// Docker image as the root filesystem. Its build half, the initramfs
// builder, is hook/initramfs; the init binary never imports it.
//
// Boot runs named Steps, each logged as starting, done in N ms or failed,
// to /dev/kmsg and the console (KmsgLogger):
//
//  1. mount the pseudo filesystems (/dev, /proc, /sys, /run);
//  2. read the configuration (/proc/cmdline and /etc/dockroot.json);
//  3. load kernel modules (optional);
//  4. wait for the root device;
//  5. mount the btrfs top level (subvolid=5) on /run/dockroot/top;
//  6. resolve the image in Docker's store;
//  7. create the rw layer (a snapshot under a temporary name);
//  8. apply the top layer, then commit the rw layer (rotate);
//  9. mount the new root (subvol=NAME) on /newroot;
//  10. record the boot in /run/dockroot/boot.json;
//  11. switch_root into the image's init.
//
// Everything outside the sequence's own logic is a field of Env, so the
// sequence runs in unit tests against fakes and temporary directories.
// Boot returns a *BootError; what it means (shell, reboot, power off) is
// decided by main through Failsafe. dockroot.onfail=previous is handled
// inside Boot, since only the sequence knows which layer is safe to boot.
package hook
