#!/bin/sh
# fetch-deb.sh CACHE_DIR PACKAGE [DEPENDS_PREFIX]
#
# Downloads Debian's PACKAGE for $DEB_ARCH (default: this machine's
# architecture) with `apt-get download`, unpacks it with `dpkg-deb -x` under
# CACHE_DIR/<package>_<version>/, and prints that directory on stdout. With
# DEPENDS_PREFIX, PACKAGE is a metapackage and the package fetched is its
# first dependency whose name starts with DEPENDS_PREFIX (linux-image-arm64
# linux-image-: the release's current kernel image package).
#
# A foreign architecture (arm64 on an amd64 machine) is read from a private
# apt state, $DOCKROOT_APT_STATE (default CACHE_DIR/../apt-ARCH), made from
# this machine's sources with APT::Architecture=ARCH: the machine's own dpkg
# and apt configuration are never changed (no dpkg --add-architecture), and
# names resolve to ARCH's packages whatever architectures it has added. The
# private index is refreshed when it is missing, or once when the package or
# its version cannot be found or downloaded (the mirror dropped an old one).
#
# Idempotent: a completed unpack (marked by .complete) is reused without
# network access. Progress goes to stderr so callers can capture stdout.
set -eu

if [ $# -ne 2 ] && [ $# -ne 3 ]; then
	echo "usage: $0 CACHE_DIR PACKAGE [DEPENDS_PREFIX]" >&2
	exit 2
fi
cache=$1
pkg=$2
prefix=${3:-}
arch=${DEB_ARCH:-$(dpkg --print-architecture)}

# apt_opts: the options every apt call of this script uses.
apt_opts=""
private=""
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
	private=${DOCKROOT_APT_STATE:-$(dirname "$cache")/apt-$arch}
	apt_opts="-o APT::Architecture=$arch -o APT::Architectures=$arch -o Dir::State::Lists=$private/lists -o Dir::Cache=$private/cache -o Dir::State::status=/dev/null"
fi

# refresh updates the private index; the machine's own is not ours to update.
refresh() {
	[ -n "$private" ] || return 1
	echo "fetch-deb: updating the $arch package index in $private" >&2
	mkdir -p "$private/lists/partial" "$private/cache/archives/partial"
	# shellcheck disable=SC2086
	apt-get -q $apt_opts -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false update >&2
}

candidate() {
	# shellcheck disable=SC2086
	apt-cache $apt_opts policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'
}

if [ -n "$private" ] && ! ls "$private"/lists/*_Packages* >/dev/null 2>&1; then
	refresh
fi
if [ -n "$prefix" ]; then
	meta=$pkg
	resolve() {
		# shellcheck disable=SC2086
		apt-cache $apt_opts depends "$meta" 2>/dev/null | awk -v p="$prefix" '$1 == "Depends:" && index($2, p) == 1 {print $2; exit}'
	}
	pkg=$(resolve)
	if [ -z "$pkg" ]; then
		refresh || true
		pkg=$(resolve)
	fi
	if [ -z "$pkg" ]; then
		echo "fetch-deb: cannot find the $prefix* package $meta ($arch) depends on; run 'apt-get update'" >&2
		exit 1
	fi
fi
version=$(candidate)
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
	refresh || true
	version=$(candidate)
fi
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
	echo "fetch-deb: no installable version of $pkg for $arch; run 'apt-get update' (or delete ${private:-the apt lists})" >&2
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

# apt-get download writes into the current directory; run it in tmp, and as
# root it drops privileges to _apt, which must be able to write there.
chmod 0777 "$tmp"
download() {
	echo "fetch-deb: downloading $pkg $version ($arch)" >&2
	# shellcheck disable=SC2086
	(cd "$tmp" && apt-get download -q $apt_opts "$pkg=$version" >&2)
}
if ! download; then
	refresh || exit 1
	version=$(candidate)
	dir=$cache/${pkg}_$version
	download
fi
deb=$(ls "$tmp"/*.deb)
mkdir "$tmp/root"
dpkg-deb -x "$deb" "$tmp/root"
touch "$tmp/root/.complete"
rm -rf "$dir"
mv "$tmp/root" "$dir"
echo "$dir"
