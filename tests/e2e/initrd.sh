#!/usr/bin/env bash
# Builds the test initrd (busybox-static + init.sh as /init, gzip'd newc cpio) and prints its
# path. Cached under CACHE_DIR by a hash of everything that goes into it.
#   tests/e2e/initrd.sh CACHE_DIR
set -euo pipefail
cache="${1:?usage: initrd.sh CACHE_DIR}"
here="$(cd "$(dirname "$0")" && pwd)"
busybox=/bin/busybox
# The initrd has no libraries: a dynamically linked busybox (Debian's `busybox`) cannot run there.
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "a static /bin/busybox is needed: apt-get install busybox-static" >&2
  exit 1
fi
command -v cpio >/dev/null || { echo "cpio is needed: apt-get install cpio" >&2; exit 1; }

key=$(cat "$here/initrd.sh" "$here/init.sh" "$busybox" | sha256sum | cut -c1-16)
out="$cache/initrd-$key/initrd.cpio.gz"
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.initrd-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"
mkdir -p "$root/bin" "$root/proc" "$root/dev" "$root/sys"
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$here/init.sh" "$root/init"
# Fixed owner and mtimes, sorted names: the same inputs give the same bytes.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -n -9 > "$tmp/initrd.cpio.gz"
mkdir -p "$(dirname "$out")"
mv "$tmp/initrd.cpio.gz" "$out"
echo "$out"
