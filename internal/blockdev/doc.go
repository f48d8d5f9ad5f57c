// Package blockdev finds block devices the way the kernel's root= does, but
// without udev: it is what dockroot-init (PID 1 in the initramfs) uses to wait
// for root= and toplayer=, and what `dockroot doctor` uses to list disks.
//
// The device names it looks for are config.DeviceSpec values, parsed by
// config.ParseDeviceSpec: one parser for root=, toplayer= and resume=.
//
// It scans /sys/class/block, makes sure each device has a node under /dev
// (devtmpfs normally creates it; otherwise it is made from the sysfs
// major:minor), and reads the on-disk metadata itself: btrfs, ext2/3/4, vfat
// and swap superblocks for LABEL= and UUID=, and GPT or MBR partition tables
// for PARTUUID= and PARTLABEL=. Nothing here uses cgo or libblkid, so the
// package builds into the static init binary.
//
// The parsing is pure (it works on an io.ReaderAt); the sysfs and /dev paths
// are fields of Scanner so tests can point them at a temporary tree.
//
// It imports only config (for device specs): the init and the host tool use
// it, and it must not import the boot, the stores or the host tool's
// packages.
package blockdev
