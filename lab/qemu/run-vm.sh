#!/usr/bin/env bash
# Powers on one lab machine: QEMU (q35, UEFI/OVMF, TCG or KVM), daemonized, and returns.
#
#   lab/qemu/run-vm.sh --dir DIR --disk DISK --mac MAC [--ssh-port PORT] [--ssh-addr ADDR]
#                      [--pxe http://HOST:PORT/boot.ipxe] [--net-first] [--foreground]
#                      [--memory MiB]
#
# DIR holds the machine's state: vars.fd (its UEFI variables), qemu.pid, serial.log (the
# console; an older one is kept as serial.log.1, .2, …) and qemu.log. A machine already
# running from DIR is powered off first, so this is also "power cycle". With --pxe the NIC
# carries UEFI iPXE (Debian's ipxe-qemu) and boots after the disk: a blank disk falls through
# to the network, an installed one boots. SSH is forwarded from ADDR:PORT (default
# 127.0.0.1) to the guest's port 22. --net-first puts the NIC before the disk (a BMC's "boot
# from PXE"). --foreground runs QEMU in the foreground and makes a guest reboot end it (what
# lab/qemu/bmc.sh needs to apply a changed boot device at the next boot). QEMU_ACCEL chooses the accelerator: default "tcg";
# "kvm:tcg" tries KVM first (QEMU falls back when KVM cannot be opened, but not when KVM
# opens and then fails, as nested virtualisation sometimes does).
set -euo pipefail
dir="" disk="" mac="" ssh_port="" ssh_addr=127.0.0.1 pxe="" memory=1024 ssh_guest_port=22
net_first="" foreground=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --disk) disk=$2; shift 2 ;;
    --mac) mac=$2; shift 2 ;;
    --ssh-port) ssh_port=$2; shift 2 ;;
    --ssh-addr) ssh_addr=$2; shift 2 ;;
    --ssh-guest-port) ssh_guest_port=$2; shift 2 ;;
    --pxe) pxe=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --net-first) net_first=1; shift ;;
    --foreground) foreground=1; shift ;;
    *) echo "run-vm: unknown argument $1" >&2; exit 64 ;;
  esac
done
[ -n "$dir" ] && [ -n "$disk" ] && [ -n "$mac" ] || { echo "usage: run-vm.sh --dir DIR --disk DISK --mac MAC [...]" >&2; exit 64; }
command -v qemu-system-x86_64 >/dev/null || { echo "run-vm: install the Debian package qemu-system-x86" >&2; exit 1; }
code=/usr/share/OVMF/OVMF_CODE_4M.fd
vars=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -r "$code" ] || { echo "run-vm: $code missing: install the Debian package ovmf" >&2; exit 1; }
rom=/usr/lib/ipxe/qemu/efi-virtio.rom
if [ -n "$pxe" ] && [ ! -r "$rom" ]; then echo "run-vm: $rom missing: install the Debian package ipxe-qemu" >&2; exit 1; fi

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -s "$dir/qemu.pid" ]; then
  pid=$(cat "$dir/qemu.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$dir/qemu.pid"
fi
[ -f "$dir/vars.fd" ] || cp "$vars" "$dir/vars.fd"
# Keep earlier consoles: a test or an operator reads the one of the boot that went wrong.
if [ -f "$dir/serial.log" ]; then
  n=1; while [ -e "$dir/serial.log.$n" ]; do n=$((n + 1)); done
  mv "$dir/serial.log" "$dir/serial.log.$n"
fi

if [ -z "${QEMU_ACCEL:-}" ]; then
  # /dev/kvm may exist without working (nested virtualisation): TCG is the safe default.
  QEMU_ACCEL=tcg
fi
accel_args=()
IFS=: read -ra accels <<<"$QEMU_ACCEL"
for a in "${accels[@]}"; do accel_args+=(-accel "$a"); done

netdev="user,id=n0"
[ -n "$ssh_port" ] && netdev+=",hostfwd=tcp:$ssh_addr:$ssh_port-:$ssh_guest_port"
nic="virtio-net-pci,netdev=n0,mac=$mac"
disk_index=1
if [ -n "$pxe" ]; then
  netdev+=",bootfile=$pxe"
  if [ -n "$net_first" ]; then
    nic+=",romfile=$rom,bootindex=1"
    disk_index=2
  else
    nic+=",romfile=$rom,bootindex=2"
  fi
else
  nic+=",romfile="
fi
mode_args=(-daemonize)
[ -n "$foreground" ] && mode_args=(-no-reboot)

qemu-system-x86_64 "${accel_args[@]}" -machine q35 -m "$memory" -smp 2 \
  -drive "if=pflash,format=raw,unit=0,readonly=on,file=$code" \
  -drive "if=pflash,format=raw,unit=1,file=$dir/vars.fd" \
  -drive "if=none,id=d0,file=$disk,format=raw,cache=unsafe" -device "virtio-blk-pci,drive=d0,bootindex=$disk_index" \
  -netdev "$netdev" -device "$nic" \
  -object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0 \
  -display none -serial "file:$dir/serial.log" -monitor none \
  "${mode_args[@]}" -pidfile "$dir/qemu.pid" -D "$dir/qemu.log"
[ -n "$foreground" ] && exit 0
echo "run-vm: $(basename "$dir") powered on (pid $(cat "$dir/qemu.pid"), console $dir/serial.log)"
