#!/usr/bin/env bash
# Replaces grub.cfg on the OEM partition (number 6) of a lab disk image, as an installer would
# after writing the image: the way to give an image kernel arguments and ignition.config.url
# without PXE. Rootless (debugfs on a copy of the partition).
#   lab/qemu/set-oem-grub.sh DISK.img GRUB_CFG_FILE
set -euo pipefail
disk="${1:?usage: set-oem-grub.sh DISK GRUB_CFG}"
cfg="${2:?usage: set-oem-grub.sh DISK GRUB_CFG}"
for t in sgdisk:gdisk debugfs:e2fsprogs; do
  command -v "${t%%:*}" >/dev/null || { echo "set-oem-grub: install the Debian package ${t#*:}" >&2; exit 1; }
done
info=$(sgdisk -i 6 "$disk")
start=$(awk '/^First sector:/ {print $3}' <<<"$info")
end=$(awk '/^Last sector:/ {print $3}' <<<"$info")
[ -n "$start" ] && [ -n "$end" ] || { echo "set-oem-grub: $disk has no partition 6 (OEM)" >&2; exit 1; }
part=$(mktemp "${TMPDIR:-/tmp}/oem-XXXXXX.img")
trap 'rm -f "$part"' EXIT
dd if="$disk" of="$part" bs=512 skip="$start" count=$((end - start + 1)) status=none
debugfs -w -R "rm grub.cfg" "$part" >/dev/null 2>&1 || true
debugfs -w -R "write $cfg grub.cfg" "$part" >/dev/null 2>&1
debugfs -R "cat grub.cfg" "$part" 2>/dev/null | cmp -s - "$cfg" || { echo "set-oem-grub: writing grub.cfg failed" >&2; exit 1; }
dd if="$part" of="$disk" bs=512 seek="$start" conv=notrunc status=none
