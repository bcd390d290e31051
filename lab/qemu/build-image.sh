#!/usr/bin/env bash
# Builds the QEMU lab's Flatcar-like machine image from Debian packages (see docs/qemu-lab.md).
#
#   lab/qemu/build-image.sh OUT_DIR
#
# Writes into OUT_DIR:
#   disk.img                                   raw GPT disk: EFI-SYSTEM, USR-A, OEM, ROOT
#   flatcar_production_image.bin.bz2           the same disk, as flatcar-install downloads it
#   flatcar_production_pxe.vmlinuz             kernel (disk and PXE)
#   flatcar_production_pxe_image.cpio.gz       initrd (disk and PXE; zstd inside, the kernel
#                                              does not care about the name)
#   input-hash                                 what the outputs were built from (see below)
#
# The build is cached: the input hash covers this script, assemble.sh, files/, the guest helper's
# sources and the exact versions of every Debian package used. When OUT_DIR/input-hash
# matches, nothing is done. Downloaded packages are kept in $ROUNDHOUSE_LAB_DEBS
# (default OUT_DIR/debs) so a rebuild after a script change does not download again.
#
# Host tools (Debian packages): apt, dpkg, fakeroot, e2fsprogs, dosfstools, mtools, gdisk,
# grub-efi-amd64-bin, grub-common, cpio, zstd, bzip2, binutils, kmod, cargo (for the guest
# helper). Root should not be needed (ownership inside the image comes from fakeroot; nothing
# is mounted), though it has only been run as root so far. The guest helper is built in
# $ROUNDHOUSE_LAB_GUEST_TARGET (default OUT_DIR/guest-target).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

# Second stage, run under fakeroot: assemble file systems and the disk.
if [ "${1:-}" = --assemble ]; then
  shift
  # shellcheck source=/dev/null
  . "$here/assemble.sh"
  assemble "$@"
  exit 0
fi

out="${1:?usage: build-image.sh OUT_DIR}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
debs="${ROUNDHOUSE_LAB_DEBS:-$out/debs}"

need() {
  command -v "$1" >/dev/null || { echo "build-image: $1 not found: install the Debian package $2" >&2; exit 1; }
}
need apt-get apt; need dpkg-deb dpkg; need fakeroot fakeroot; need mkfs.ext4 e2fsprogs
need mkfs.vfat dosfstools; need mcopy mtools; need sgdisk gdisk; need grub-mkstandalone grub-common
need cpio cpio; need zstd zstd; need bzip2 bzip2; need readelf binutils; need depmod kmod
need cargo cargo
[ -d /usr/lib/grub/x86_64-efi ] || { echo "build-image: install the Debian package grub-efi-amd64-bin" >&2; exit 1; }

# The kernel is whatever linux-image-amd64 points at today.
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1=="Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
[ -n "$kernel_pkg" ] || { echo "build-image: apt does not know linux-image-amd64; run apt-get update" >&2; exit 1; }

# Everything that goes into the image. Libraries are listed explicitly; assemble.sh fails
# naming any shared library a binary needs that none of these provides.
packages=(
  "$kernel_pkg" busybox-static dropbear-bin ignition e2fsprogs util-linux passwd
  libc6 libgcc-s1 libtomcrypt1 libtommath1 libgmp10 zlib1g libcrypt1
  libext2fs2 libcom-err2 libblkid1 libuuid1 libsmartcols1
  libaudit1 libselinux1 libsemanage2 libcap-ng0 libpcre2-8-0 libsepol2 libbz2-1.0
)
# One apt-cache call for all (each call reads the whole package cache: seconds apiece).
declare -A candidate=()
while read -r p v; do candidate[$p]=$v; done < <(
  apt-cache policy "${packages[@]}" 2>/dev/null |
    awk '/^[^ ].*:$/ {p = substr($1, 1, length($1) - 1)} /Candidate:/ {print p, $2}')
pinned=()
for p in "${packages[@]}"; do
  v=${candidate[$p]:-}
  if [ -z "$v" ] || [ "$v" = "(none)" ]; then
    echo "build-image: apt has no candidate for $p; run apt-get update" >&2; exit 1
  fi
  pinned+=("$p=$v")
done

hash=$(
  {
    printf '%s\n' "${pinned[@]}"
    # Only what goes into the image: run-vm.sh, bmc.sh and set-oem-grub.sh do not.
    for f in "$here/build-image.sh" "$here/assemble.sh" "$here"/files/*; do
      printf '%s\n' "${f#"$here"/}"; cat "$f"
    done
    (cd "$repo" && cat lab/qemu/guest/Cargo.toml lab/qemu/guest/src/*.rs)
  } | sha256sum | cut -c1-32
)
outputs=(disk.img flatcar_production_image.bin.bz2 flatcar_production_pxe.vmlinuz flatcar_production_pxe_image.cpio.gz)
all_there() { for f in "${outputs[@]}"; do [ -s "$out/$f" ] || return 1; done; }
if [ "$(cat "$out/input-hash" 2>/dev/null)" = "$hash" ] && all_there; then
  echo "build-image: up to date ($hash) in $out" >&2
  exit 0
fi
echo "build-image: building $hash into $out" >&2
started=$(date +%s)

# Download (as the invoking user; apt drops to _apt when it can, so the directory is
# world-writable while it downloads).
mkdir -p "$debs"
chmod 0777 "$debs"
for pv in "${pinned[@]}"; do
  p=${pv%%=*}; v=${pv#*=}
  file_v=${v//:/%3a}
  if ! ls "$debs/${p}_${file_v}_"*.deb >/dev/null 2>&1; then
    (cd "$debs" && apt-get download -qq "$p=$v" >&2) || {
      echo "build-image: apt-get download $p=$v failed (stale apt lists? run apt-get update)" >&2; exit 1; }
  fi
done
chmod 0755 "$debs"

work=$(mktemp -d "$out/.work-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pkgs" "$work/kernel"
for pv in "${pinned[@]}"; do
  p=${pv%%=*}; v=${pv#*=}; file_v=${v//:/%3a}
  deb=$(ls "$debs/${p}_${file_v}_"*.deb | head -n1)
  if [ "$p" = "$kernel_pkg" ]; then
    dpkg-deb -x "$deb" "$work/kernel"
  else
    dpkg-deb -x "$deb" "$work/pkgs"
  fi
done

# The guest helper, built in its own target directory so a build running this script (a test
# under `cargo test`) never waits on its own target directory's lock.
guest_target="${ROUNDHOUSE_LAB_GUEST_TARGET:-$out/guest-target}"
(cd "$repo" && CARGO_TARGET_DIR="$guest_target" cargo build -q --release --locked -p roundhouse-lab-guest >&2)
cp "$guest_target/release/roundhouse-lab-guest" "$work/guest"

fakeroot -- bash "$here/build-image.sh" --assemble "$work" "$out" "$kernel_pkg"

# flatcar-install downloads a bzip2'd image; most of the disk is zeros, which bzip2 takes fast.
bzip2 -1 -c "$out/disk.img" > "$out/.image.bz2"
mv "$out/.image.bz2" "$out/flatcar_production_image.bin.bz2"
echo "$hash" > "$out/input-hash"
echo "build-image: done in $(( $(date +%s) - started )) s" >&2
