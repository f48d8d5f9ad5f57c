#!/bin/sh
# Installs the Debian packages dockroot's build, tests and demo need, when
# they are missing. Idempotent: on a machine that has them it only checks.
set -eu

PKGS="
btrfs-progs
docker-registry
busybox-static
cpio
cryptsetup-bin
debootstrap
device-tree-compiler
docker.io
dosfstools
e2fsprogs
fdisk
file
gdisk
gnuplot-nox
grub-common
grub-efi-amd64-bin
jq
mtools
ovmf
podman
systemd-boot-efi
kmod
qemu-system-arm
libarchive-tools
qemu-system-x86
refind
rpm
util-linux
xz-utils
zstd
${DOCKROOT_EXTRA_PKGS:-}
"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "deps: all Debian packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run 'sudo make deps' (or apt-get install$missing)" >&2
	exit 1
fi

echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# The tests only need rEFInd's EFI binary; never let its postinst install it
# into this machine's ESP or touch its NVRAM boot entries.
echo "refind refind/install_to_esp boolean false" | debconf-set-selections
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
