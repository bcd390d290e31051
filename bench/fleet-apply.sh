#!/usr/bin/env bash
# Benchmark: `roundhouse apply` over N simulated machines (roundhouse-sim) at max_parallel 100.
#   bench/fleet-apply.sh [N]          (default 1000)
# Phase 1 PXE-installs every machine (power through each machine's Redfish BMC with curl, the
# `command` power driver); phase 2 changes a snippet and re-provisions every machine in place
# over SSH. Each phase's wall time is printed beside the ideal ceil(N/P) x per-node time, where
# the per-node time is measured first by running the same two phases on a fleet of one machine
# (same binaries, same flags). Peak RSS: apply (per phase), the boot server and the simulator.
#
# Environment: PARALLEL (100), TIME_FACTOR (0.05: a PXE install's simulated waits take
# 3.75 s, an in-place re-provision's 1.5 s), POLL_INITIAL (0.5), POLL_MAX (2), BENCH_DIR
# (/dev/shm when it exists: 1,000 machines' disks are slow to delete from a disk with discard),
# KEEP=1 keeps the work directory (logs, apply's per-node event lines).
# Needs root (the simulator's mount namespaces), curl, python3, /usr/bin/time (Debian: time).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
parallel="${PARALLEL:-100}"
factor="${TIME_FACTOR:-0.05}"
poll_initial="${POLL_INITIAL:-0.5}"
poll_max="${POLL_MAX:-2}"
for tool in curl python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install curl python3 time" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || echo "warning: not root; the simulator falls back to user namespaces" >&2

cargo build --release --quiet --locked -p roundhouse --bin roundhouse -p roundhouse-sim --bin roundhouse-sim
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/roundhouse"
sim="$target/release/roundhouse-sim"
bin=$(realpath "$bin")
sim=$(realpath "$sim")

base="${BENCH_DIR:-/dev/shm}"
[ -d "$base" ] || base="${TMPDIR:-/tmp}"
work=$(mktemp -d "$base/fleet-apply.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The power action an operator would write for a Redfish BMC: one-time PXE, then restart (the
# simulated BMC powers a machine that is off on).
cat >"$work/power.sh" <<'EOF'
#!/bin/sh
set -e
bmc=$(cat "$(dirname "$asset_dir")/bmc/$name")
sys="$bmc/redfish/v1/Systems/1"
curl -fsS --max-time 10 -X PATCH -H 'Content-Type: application/json' \
  -d '{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}' "$sys"
curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' \
  -d '{"ResetType":"ForceRestart"}' "$sys/Actions/ComputerSystem.Reset"
EOF
chmod 755 "$work/power.sh"

# Peak RSS (VmHWM) of a running process, in MiB.
hwm() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
# CPU seconds (user + system) of a running process and its waited-for children (the
# simulator's machine shells), so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat"; }

# Starts a boot server and a fleet of $2 machines in $1, writes $1/cluster.hcl.
start_lab() {
  local dir="$1" count="$2"
  mkdir -p "$dir/assets/matchbox" "$dir/assets/boot-state" "$dir/bmc"
  "$bin" serve --address 127.0.0.1:0 --data-path "$dir/assets/matchbox" \
    --state-path "$dir/assets/boot-state" 2>"$dir/serve.log" >/dev/null &
  serve_pid=$!
  pids+=("$serve_pid")
  local url=""
  for _ in $(seq 100); do
    url=$(sed -n 's/^listening on //p' "$dir/serve.log" | head -1)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$dir/serve.log" >&2; exit 1; }
  cat >"$dir/fleet.json" <<EOF
{"boot_url": "$url/boot.ipxe", "state_dir": "$dir/sim", "time_factor": $factor,
 "generate": {"count": $count, "name_prefix": "node-"}}
EOF
  "$sim" "$dir/fleet.json" >"$dir/ready.json" 2>"$dir/sim.log" &
  sim_pid=$!
  pids+=("$sim_pid")
  # The ready line is complete once it ends with a newline.
  for _ in $(seq 600); do
    [ -s "$dir/ready.json" ] && [ "$(tail -c1 "$dir/ready.json" | od -An -tx1 | tr -d ' ')" = 0a ] && break
    kill -0 "$sim_pid" 2>/dev/null || { cat "$dir/sim.log" >&2; exit 1; }
    sleep 0.1
  done
  python3 - "$dir" "$url" "$work/power.sh" <<'EOF'
import json, sys
d, url, power = sys.argv[1:]
ready = json.loads(open(f"{d}/ready.json").readline())
key = open("tests/fixture-keys/operator_ed25519.pub").read().strip()
out = [f'''cluster {{
  name = "bench"
  asset_dir = "assets"
  ssh_pubkeys = ["{key}"]
  boot_server_http = "{url}"
  snippets = [file("snippet.bu")]
  power {{
    driver  = "command"
    command = "{power}"
  }}
}}
''']
for m in ready["machines"]:
    open(f"{d}/bmc/{m['name']}", "w").write(m["bmc_url"])
    port = m["ssh"].rsplit(":", 1)[1]
    out.append(f'node "{m["name"]}" {{\n  role = "worker"\n  mac = "{m["mac"]}"\n'
               f'  domain = "{m["address"]}"\n  ssh_port = {port}\n}}\n')
open(f"{d}/cluster.hcl", "w").write("".join(out))
EOF
  write_snippet "$dir" 1
}

write_snippet() {
  cat >"$1/snippet.bu" <<EOF
variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/bench/generation
      contents:
        inline: "$2"
EOF
}

# Runs apply in $1; prints "SECONDS MAX_RSS_MIB SUMMARY".
run_apply() {
  local dir="$1" phase="$2"
  local start end
  start=$(date +%s.%N)
  (cd "$dir" && /usr/bin/time -f "%U %S %M" -o "$dir/apply-$phase.rss" "$bin" apply cluster.hcl --yes \
    --max-parallel "$parallel" --poll-initial "$poll_initial" --poll-max "$poll_max" \
    --pxe-timeout 600 --in-place-timeout 600 --reach-timeout 300 --connect-timeout 10 \
    2>"$dir/apply-$phase.log") || true
  end=$(date +%s.%N)
  local summary
  summary=$(grep '^apply: ' "$dir/apply-$phase.log" | tail -1 || true)
  local usage
  usage=$(tail -1 "$dir/apply-$phase.rss")
  printf '%.1f %.0f %.1f %s\n' "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" \
    "$(echo "$usage" | awk '{ print $3 / 1024 }')" "$(echo "$usage" | awk '{ print $1 + $2 }')" \
    "${summary:-no summary: see $dir/apply-$phase.log}"
}

echo "calibrating: the same phases on one machine" >&2
start_lab "$work/one" 1
one_pxe=$(run_apply "$work/one" pxe)
write_snippet "$work/one" 2
one_inplace=$(run_apply "$work/one" inplace)
t_pxe=${one_pxe%% *}
t_inplace=${one_inplace%% *}
for p in "${pids[@]}"; do kill -TERM "$p"; wait "$p" || true; done
pids=()

echo "load before the fleet run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "fleet of $n machines, max_parallel $parallel, time factor $factor" >&2
start_lab "$work/fleet" "$n"
pxe=$(run_apply "$work/fleet" pxe)
sim_cpu_pxe=$(cpu "$sim_pid")
serve_cpu_pxe=$(cpu "$serve_pid")
write_snippet "$work/fleet" 2
inplace=$(run_apply "$work/fleet" inplace)
serve_rss=$(hwm "$serve_pid")
sim_rss=$(hwm "$sim_pid")
sim_cpu=$(cpu "$sim_pid")
serve_cpu=$(cpu "$serve_pid")
waves=$(( (n + parallel - 1) / parallel ))

ideal() { awk -v w="$waves" -v t="$1" 'BEGIN { print w * t }'; }
printf '\n%s machines, max_parallel %s, time factor %s, %s wave(s) of at most %s\n' "$n" "$parallel" "$factor" "$waves" "$parallel"
printf '%-22s %9s %9s %9s %10s %8s  %s\n' phase "one node" ideal measured "apply RSS" "apply CPU" result
for phase in pxe inplace; do
  if [ $phase = pxe ]; then row=$pxe; one=$t_pxe; name="PXE install"; else row=$inplace; one=$t_inplace; name="in-place re-provision"; fi
  read -r secs rss cpus summary <<<"$row"
  printf '%-22s %8.1fs %8.1fs %8.1fs %6s MiB %8ss  %s\n' "$name" "$one" "$(ideal "$one")" "$secs" "$rss" "$cpus" "$summary"
done
printf 'peak RSS: boot server %s MiB, simulator %s MiB\n' "$serve_rss" "$sim_rss"
printf 'CPU seconds (PXE phase / both phases): simulator with its machines'"'"' shells %s / %s, boot server %s / %s\n' \
  "$sim_cpu_pxe" "$sim_cpu" "$serve_cpu_pxe" "$serve_cpu"
printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
