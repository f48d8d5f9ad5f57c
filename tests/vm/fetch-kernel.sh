#!/bin/sh
# fetch-kernel.sh CACHE_DIR
#
# Downloads Debian's kernel image package (the one linux-image-$ARCH depends on,
# or $KERNEL_PACKAGE if set) with `apt-get download`, unpacks it with
# `dpkg-deb -x` under CACHE_DIR/<package>_<version>/, and prints that directory
# on stdout. The directory is a filesystem root: boot/vmlinuz-KVER and
# lib/modules/KVER/ (the layout `dockroot initramfs --root` expects).
#
# Idempotent: a completed unpack (marked by .complete) is reused without
# network access. Progress goes to stderr so callers can capture stdout.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 CACHE_DIR" >&2
	exit 2
fi
cache=$1
arch=${KERNEL_ARCH:-$(dpkg --print-architecture)}
meta=linux-image-$arch

pkg=${KERNEL_PACKAGE:-}
if [ -z "$pkg" ]; then
	# The metapackage depends on exactly one versioned image package; that is
	# the current signed, non-cloud, non-rt kernel of the release.
	pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
	if [ -z "$pkg" ]; then
		echo "fetch-kernel: cannot find the kernel package $meta depends on; run 'apt-get update' or set KERNEL_PACKAGE" >&2
		exit 1
	fi
fi

version=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
	echo "fetch-kernel: no installable version of $pkg; run 'apt-get update'" >&2
	exit 1
fi

dir=$cache/${pkg}_$version
if [ -f "$dir/.complete" ]; then
	echo "$dir"
	exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "fetch-kernel: downloading $pkg $version" >&2
# apt-get download writes into the current directory; run it in tmp, and as
# root it drops privileges to _apt, which must be able to write there.
chmod 0777 "$tmp"
(cd "$tmp" && apt-get download -q "$pkg=$version" >&2)
deb=$(ls "$tmp"/*.deb)
mkdir "$tmp/root"
dpkg-deb -x "$deb" "$tmp/root"
touch "$tmp/root/.complete"
rm -rf "$dir"
mv "$tmp/root" "$dir"
echo "$dir"
