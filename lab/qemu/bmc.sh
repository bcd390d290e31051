#!/usr/bin/env bash
# A BMC for a lab machine: OpenIPMI's ipmi_sim (IPMI over LAN, what roundhouse's IPMI driver
# and `ipmitool -I lanplus` speak) whose chassis_control powers the QEMU machine on and off
# with run-vm.sh and chooses its boot device.
#
#   lab/qemu/bmc.sh start DIR PORT USER PASSWORD -- RUN-VM-ARGS...
#   lab/qemu/bmc.sh stop DIR
#
# start writes DIR/lan.conf, DIR/bmc.emu, DIR/chassis and starts ipmi_sim on 127.0.0.1:PORT
# (UDP); it does not power the machine on. RUN-VM-ARGS are run-vm.sh's (--dir, --disk, --mac,
# --ssh-port, --pxe URL: the boot server's boot.ipxe, used when the boot device is PXE).
# The machine runs under a small supervisor (`bmc.sh machine DIR`): QEMU in the foreground
# with -no-reboot, restarted on every guest reboot while the power is on, each time with the
# boot device then set. A PXE boot device is consumed by the boot it starts, as a BMC's
# "next boot only" override is; `disk` (ipmi_sim says `default`) stays.
# Needs the Debian package openipmi.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

case "${1:-}" in
start)
  dir=$2 port=$3 user=$4 password=$5
  shift 5
  [ "${1:-}" = -- ] && shift
  command -v ipmi_sim >/dev/null || { echo "bmc: install the Debian package openipmi" >&2; exit 1; }
  mkdir -p "$dir/state"
  dir=$(cd "$dir" && pwd)
  printf '%q ' "$@" > "$dir/run-vm-args"
  echo default > "$dir/boot"
  cat > "$dir/chassis" <<EOF
#!/bin/sh
exec "$here/bmc.sh" chassis "$dir" "\$@"
EOF
  chmod 0755 "$dir/chassis"
  cat > "$dir/lan.conf" <<EOF
name "lab-bmc"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 $port
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "$dir/chassis"
  poweroff_wait 1
  kill_wait 1
  user 2 true "$user" "$password" admin 10 none md2 md5 straight
EOF
  printf 'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n' > "$dir/bmc.emu"
  setsid ipmi_sim -c "$dir/lan.conf" -f "$dir/bmc.emu" -s "$dir/state" -n \
    </dev/null >"$dir/ipmi_sim.log" 2>&1 &
  echo $! > "$dir/ipmi_sim.pid"
  echo "bmc: ipmi_sim on 127.0.0.1:$port (pid $!)"
  ;;

stop)
  dir=$2
  echo 0 > "$dir/power" 2>/dev/null || true
  "$0" chassis "$dir" set power 0 || true
  if alive "$dir/ipmi_sim.pid"; then kill "$(cat "$dir/ipmi_sim.pid")"; fi
  rm -f "$dir/ipmi_sim.pid"
  ;;

# Called by ipmi_sim: get power | get boot | set power 0|1 | set boot pxe|default|…
chassis)
  dir=$2
  shift 2
  eval "vm_args=($(cat "$dir/run-vm-args"))"
  vm_dir=""
  for ((i = 0; i < ${#vm_args[@]}; i++)); do
    [ "${vm_args[$i]}" = --dir ] && vm_dir=${vm_args[$((i + 1))]}
  done
  echo "$(date +%s) $*" >> "$dir/calls"
  case "$1 $2" in
  "get power")
    # The machine is on when its QEMU runs, whoever started it.
    if alive "$vm_dir/qemu.pid" || alive "$dir/machine.pid"; then echo "power:1"; else echo "power:0"; fi
    ;;
  "get boot") echo "boot:$(cat "$dir/boot")" ;;
  "set boot") echo "$3" > "$dir/boot" ;;
  "set power")
    if [ "$3" = 1 ]; then
      echo 1 > "$dir/power"
      if ! alive "$dir/machine.pid"; then
        setsid "$here/bmc.sh" machine "$dir" </dev/null >>"$dir/machine.log" 2>&1 &
      fi
    else
      echo 0 > "$dir/power"
      if alive "$vm_dir/qemu.pid"; then kill "$(cat "$vm_dir/qemu.pid")" || true; fi
      # Return only once the supervisor is gone, so a "set power 1" right after (a power
      # cycle) starts a fresh one instead of finding the old one on its way out.
      for _ in $(seq 1 100); do alive "$dir/machine.pid" || break; sleep 0.1; done
    fi
    ;;
  esac
  exit 0
  ;;

machine)
  dir=$2
  echo $$ > "$dir/machine.pid"
  eval "vm_args=($(cat "$dir/run-vm-args"))"
  while [ "$(cat "$dir/power" 2>/dev/null)" = 1 ]; do
    boot=$(cat "$dir/boot")
    extra=()
    if [ "$boot" = pxe ]; then
      extra=(--net-first)
      echo default > "$dir/boot"
    fi
    echo "$(date +%s) power on, boot $boot"
    "$here/run-vm.sh" "${vm_args[@]}" "${extra[@]}" --foreground || echo "$(date +%s) QEMU ended: $?"
  done
  rm -f "$dir/machine.pid"
  ;;

*)
  echo "usage: bmc.sh start DIR PORT USER PASSWORD -- RUN-VM-ARGS... | stop DIR" >&2
  exit 64
  ;;
esac
