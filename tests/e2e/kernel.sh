#!/usr/bin/env bash
# Prints the path of a Debian x86-64 kernel for the QEMU boot tests, caching it under CACHE.
#   tests/e2e/kernel.sh CACHE_DIR
# $ROUNDHOUSE_E2E_KERNEL wins when set; otherwise a /boot/vmlinuz-* of the host; otherwise the
# package that linux-image-amd64 depends on is fetched with `apt-get download` and unpacked
# with `dpkg-deb -x` (no root needed, nothing installed, no postinst run).
set -euo pipefail
cache="${1:?usage: kernel.sh CACHE_DIR}"

if [ -n "${ROUNDHOUSE_E2E_KERNEL:-}" ]; then
  [ -r "$ROUNDHOUSE_E2E_KERNEL" ] || { echo "ROUNDHOUSE_E2E_KERNEL=$ROUNDHOUSE_E2E_KERNEL is not readable" >&2; exit 1; }
  echo "$ROUNDHOUSE_E2E_KERNEL"
  exit 0
fi

# A host kernel is only usable when readable (Ubuntu makes them root-only).
for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
  if [ -r "$k" ]; then echo "$k"; exit 0; fi
done

# Reuse any kernel unpacked before, so a machine without apt lists still works offline.
for k in $(ls -1 "$cache"/kernel-*/boot/vmlinuz-* 2>/dev/null | sort -V -r); do
  echo "$k"; exit 0
done

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || {
  echo "no kernel: set ROUNDHOUSE_E2E_KERNEL, or install linux-image-amd64 (Debian)" >&2; exit 1; }
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1=="Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
if [ -z "$pkg" ]; then
  echo "apt does not know linux-image-amd64: run 'apt-get update', or set ROUNDHOUSE_E2E_KERNEL" >&2
  exit 1
fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.kernel-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# apt drops to the _apt user for downloads when it can write the directory.
chmod 0777 "$tmp"
(cd "$tmp" && apt-get download -q "$pkg" >&2) || {
  echo "apt-get download $pkg failed (apt lists stale? run 'apt-get update')" >&2; exit 1; }
mkdir "$tmp/root"
# Only the kernel image: the modules are most of the package and not needed.
dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp/root" --wildcards './boot/vmlinuz-*'
k=$(ls -1 "$tmp"/root/boot/vmlinuz-* | head -n1)
dest="$cache/kernel-$pkg"
mkdir -p "$dest/boot"
mv "$k" "$dest/boot/"
echo "$dest/boot/$(basename "$k")"
