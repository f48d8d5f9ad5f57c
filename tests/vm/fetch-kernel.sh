#!/bin/sh
# fetch-kernel.sh CACHE_DIR
#
# Downloads Debian's kernel image package for $KERNEL_ARCH (default: this
# machine's architecture), the one linux-image-$KERNEL_ARCH depends on, or
# $KERNEL_PACKAGE if set, unpacks it under CACHE_DIR/<package>_<version>/ and
# prints that directory on stdout (fetch-deb.sh does the work; a foreign
# architecture is read from a private apt index). The directory is a
# filesystem root: boot/vmlinuz-KVER and lib/modules/KVER/ (the layout
# `dockroot initramfs --root` expects).
#
# Idempotent: a completed unpack (marked by .complete) is reused without
# network access. Progress goes to stderr so callers can capture stdout.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 CACHE_DIR" >&2
	exit 2
fi
here=$(dirname "$0")
export DEB_ARCH="${KERNEL_ARCH:-$(dpkg --print-architecture)}"
if [ -n "${KERNEL_PACKAGE:-}" ]; then
	exec sh "$here/fetch-deb.sh" "$1" "$KERNEL_PACKAGE"
fi
# The metapackage depends on exactly one versioned image package; that is
# the current signed, non-cloud, non-rt kernel of the release.
exec sh "$here/fetch-deb.sh" "$1" "linux-image-$DEB_ARCH" linux-image-
