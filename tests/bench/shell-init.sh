#!/bin/sh
# The boot benchmark's baseline /init (tests/bench): a busybox shell that
# does what the kernel needs to reach the image's init, and nothing else.
# It loads the same modules as dockroot's initramfs, waits for the root
# device, mounts the image's subvolume directly (no snapshot, no top
# layer) and switch_roots into its /sbin/init. The build fills in
# @ROOT@ and @SUBVOL@.
busybox mount -t devtmpfs devtmpfs /dev
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
while read -r m; do
	busybox insmod "/lib/modules/$m" || echo "bench-init: insmod $m failed"
done </etc/modules.list
n=0
while [ ! -b @ROOT@ ]; do
	n=$((n + 1))
	if [ $n -gt 3000 ]; then
		echo "bench-init: @ROOT@ did not appear"
		busybox poweroff -f
	fi
	busybox usleep 10000
done
busybox mount -t btrfs -o rw,subvol=@SUBVOL@ @ROOT@ /newroot
busybox mount --move /dev /newroot/dev
busybox mount --move /proc /newroot/proc
busybox mount --move /sys /newroot/sys
exec busybox switch_root /newroot /sbin/init
