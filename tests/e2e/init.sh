#!/bin/sh
# /init of the test initrd: proves that the kernel and initrd the boot server chose were booted,
# with the arguments iPXE expanded, then powers the VM off (QEMU exits).
/bin/busybox mkdir -p /proc /dev /sys
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
exec >/dev/console 2>&1
mac=none
nonce=none
for word in $(/bin/busybox cat /proc/cmdline); do
  case "$word" in
    roundhouse.mac=*) mac="${word#*=}" ;;
    roundhouse.nonce=*) nonce="${word#*=}" ;;
  esac
done
echo "ROUNDHOUSE-INITRD-OK mac=$mac nonce=$nonce"
/bin/busybox sync
/bin/busybox poweroff -f
