#!/usr/bin/env bash
# Create debian:bookworm-slim locally with debootstrap, for machines that reach Debian's
# package mirror but no container registry. Where a registry is reachable, `docker build`
# pulls the same tag and this script is not needed.
set -euo pipefail

tag=${1:-debian:bookworm-slim}
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag already present"
    exit 0
fi

command -v debootstrap >/dev/null 2>&1 || {
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
}

# Use the mirror apt already uses on this host; never hard-code one.
sources=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
mirror=$(grep -oE '^(URIs:|deb) *https?://[^ ]+' <<<"$sources" | grep -v security | head -n 1 | grep -oE 'https?://[^ ]+' || true)
[ -n "$mirror" ] || { echo "cannot find the Debian mirror in /etc/apt" >&2; exit 1; }
security=$(grep -E '^(URIs:|deb) ' <<<"$sources" | grep -oE 'https?://[^ ]+debian-security' | head -n 1 || true)
security=${security:-${mirror%/debian}/debian-security}

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$tag"
echo "imported $tag"
