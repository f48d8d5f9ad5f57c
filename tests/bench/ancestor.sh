#!/bin/bash
# The ancestor's boot-time algorithm, in shell, as the honest baseline of
# dockroot's benchmark (tests/bench, docs/BENCHMARKS.md). It does what the
# mkinitcpio docker-btrfs hook and its get-docker-cache-id helper did, with
# the same tools a shell initramfs has, and no more work than they did:
#
#   1. read image/btrfs/repositories.json for the image ID (jq);
#   2. read the image config's rootfs.diff_ids (jq);
#   3. scan every directory of image/btrfs/layerdb/sha256, reading its diff,
#      parent and cache-id, and keep the layer whose chain of diffs matches
#      the image's diff IDs (the helper's readLayerInfo/searchForCacheID);
#   4. btrfs subvolume delete the old rw layer, then btrfs subvolume
#      snapshot the image's subvolume into its place;
#   5. cp -a the top layer over it.
#
# Files are read with the `read` builtin, not cat, so the scan costs no
# process per file: the baseline is the shell way done well.
#
# usage: ancestor.sh TOP DOCKER_PATH REPOSITORY TAG RWLAYER TOPLAYER_DIR
#   TOP           where the btrfs top level is mounted
#   DOCKER_PATH   the Docker data root relative to TOP
#   REPOSITORY    familiar repository name as in repositories.json ("bench/small")
#   TAG           tag ("1")
#   RWLAYER       the rw layer subvolume relative to TOP
#   TOPLAYER_DIR  directory copied over the new layer (absolute)
set -eu

if [ $# -ne 6 ]; then
	echo "usage: $0 TOP DOCKER_PATH REPOSITORY TAG RWLAYER TOPLAYER_DIR" >&2
	exit 2
fi
top=$1 docker=$2 repo=$3 tag=$4 rwlayer=$5 toplayer=$6
db=$top/$docker/image/btrfs

image_id=$(jq -r --arg r "$repo" --arg rt "$repo:$tag" '.Repositories[$r][$rt] // empty' "$db/repositories.json")
if [ -z "$image_id" ]; then
	echo "ancestor.sh: $repo:$tag is not in $db/repositories.json" >&2
	exit 1
fi
mapfile -t diffs < <(jq -r '.rootfs.diff_ids[]' "$db/imagedb/content/sha256/${image_id#sha256:}")

declare -A diff_of parent_of cache_of
for dir in "$db"/layerdb/sha256/*/; do
	id=${dir%/}
	id=${id##*/}
	read -r d <"$dir/diff" || true
	read -r c <"$dir/cache-id" || true
	p=
	if [ -e "$dir/parent" ]; then
		read -r p <"$dir/parent" || true
	fi
	diff_of[$id]=$d
	cache_of[$id]=$c
	parent_of[$id]=${p#sha256:}
done

# A layer matches when its diff is the image's last diff ID, its parent's
# diff the one before, and so on down to a layer without a parent.
cache_id=
last=$((${#diffs[@]} - 1))
for id in "${!diff_of[@]}"; do
	[ "${diff_of[$id]}" = "${diffs[$last]}" ] || continue
	cur=${parent_of[$id]} ok=1
	for ((i = last - 1; i >= 0; i--)); do
		if [ -z "$cur" ] || [ "${diff_of[$cur]:-}" != "${diffs[$i]}" ]; then
			ok=0
			break
		fi
		cur=${parent_of[$cur]}
	done
	if [ $ok = 1 ] && [ -z "$cur" ]; then
		cache_id=${cache_of[$id]}
		break
	fi
done
if [ -z "$cache_id" ]; then
	echo "ancestor.sh: no layer in $db/layerdb matches the diff IDs of $repo:$tag" >&2
	exit 1
fi

# The ancestor deleted the old layer before the new one existed (dockroot
# does not: it swaps them, then deletes).
if [ -d "$top/$rwlayer" ]; then
	btrfs subvolume delete "$top/$rwlayer" >/dev/null
fi
btrfs subvolume snapshot "$top/$docker/btrfs/subvolumes/$cache_id" "$top/$rwlayer" >/dev/null
cp -a "$toplayer/." "$top/$rwlayer/"
