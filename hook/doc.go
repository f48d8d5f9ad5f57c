// Package hook is the run half of dockroot's boot: the sequence that
// dockroot-init (PID 1 in the initramfs, cmd/dockroot-init) runs to boot a
// Docker image as the root filesystem. Its build half, the initramfs
// builder, is internal/initramfs; the init binary never imports it.
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
//  11. find the top layer (mounting its device), expand toplayer_path='s
//     elements with the machine's identity (skipping missing ones), and
//     the prepared base of this image and top layer if one was kept
//     (rwlayer.Bases);
//  12. create the rw layer (a snapshot of the base, else of the image,
//     under a temporary name);
//  13. apply each directory of the top layer in order (unless the layer
//     came from a base), find the image's init in the new layer and keep
//     the layer as the next boot's base: a layer without init is never
//     committed;
//  14. commit the rw layer (rename it to NAME, rotate the previous ones);
//  15. mount the new root (subvol=NAME) on /newroot;
//  16. record the boot in /run/dockroot/boot.json;
//  17. switch_root into the image's init.
//
// Steps 8 to 14 make the fresh layer (Step.Fresh): they are skipped when
// an existing layer boots.
//
// The sequence is data: Steps concatenates three groups, deviceSteps (1-6,
// steps_device.go), layerSteps (7-14, steps_layer.go) and handoverSteps
// (15-17, steps_handover.go). Hook mode, dockroot inside the
// distribution's initramfs (dockroot-init --hook, run by
// initramfs-tools/scripts/local-premount/dockroot), is another selection
// of the same steps (PreparePlan, prepare.go): deviceSteps without the
// modules, layerSteps, recordStep and a step that releases the top level
// (State.releaseTop), leaving no mounts; the distribution's initramfs then
// mounts root= with rootflags=subvol=NAME, the fresh layer, and does its
// own switch_root. Prepare does nothing when no image is named. Only the
// plan differs; the steps, the runner and dockroot.onfail=previous are
// shared.
//
// Everything outside the sequence's own logic sits behind a few small
// interfaces in Env (System, Devices, Images, Layers, Bases, Hibernation,
// BootCount), whose real implementations are in env.go, so the sequence
// runs in unit tests against fakes and temporary directories.
//
// Boot returns a *BootError; what it means (shell, reboot, power off) is
// decided by main through Failsafe. dockroot.onfail=previous is handled
// inside Boot, since only the sequence knows which layer is safe to boot.
// A failed step's error gets its advice in one place, advise (advice.go).
// The step runner recovers a panic inside a step into that step's error;
// Boot recovers nothing else: main's recover is the other one.
//
// It must not import anything host-only (internal/initramfs,
// internal/bootmenu, internal/commands, internal/cli, install, doctor,
// images, Docker clients): dockroot-init links it as PID 1. The host tool
// never imports it; what both need of a boot is internal/bootrecord.
package hook
