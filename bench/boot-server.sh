#!/usr/bin/env bash
# Benchmark: `roundhouse serve` with 10,000 nodes registered, versus nginx serving the same
# bodies as static files, side by side in one run.
#   bench/boot-server.sh [NODES] [SECONDS]
# For each of /ignition?mac=…&os=installed and /ipxe?mac=… it runs wrk (64 connections,
# 2 threads, SECONDS each after a 2 s warm-up, default 10; bench/wrk-cycle.lua cycles over
# every MAC) against both servers, and prints a markdown table: requests/s, p50/p99 latency,
# the ratio to nginx, and the boot server's peak RSS. Issue targets: at least nginx's
# requests/s, p99 < 5 ms, RSS < 100 MB.
# Two setups, each server started twice: "on" is as shipped (both write an access-log line per
# request: roundhouse's default tracing log on stderr to a file, nginx's access_log) and "off"
# (RUST_LOG=info,roundhouse_boot::access=off; nginx access_log off).
#
# Setup, all in a temporary directory:
# - bench/gen-cluster.py NODES → cluster.hcl; `roundhouse render` → a matchbox data directory
#   (2 groups, 2 profiles and 2 Ignition files per node).
# - A roundhouse state directory whose netboot.json lists every node as install-pending, so
#   netboot gating and the on-disk fetch journal are part of what is measured.
# - bench/fetch-bodies.py asks the boot server for every body once and stores them as files
#   named by MAC; nginx (test-local config, more loopback ports) serves them with try_files
#   on $arg_mac.
# PIN=1 keeps client and servers off each other's CPUs: both servers run on the last CPU
# (taskset; roundhouse then starts one worker, nginx gets worker_processes 1) and wrk, with one
# thread, on the others. On a 2-core machine an unpinned run measures mostly the scheduler:
# four busy threads (two of wrk, two of the server) share two cores, and a server thread that
# loses its time slice stalls every connection it holds for milliseconds.
# Needs the Debian packages wrk, nginx-light (or any nginx), python3, curl, util-linux (taskset);
# builds --release.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-10000}"
seconds="${2:-10}"
# Each measurement is repeated and the round with the most requests/s kept: on a machine shared
# with other work that filters out rounds slowed by someone else's burst.
rounds="${ROUNDS:-2}"
connections=64
threads=2
server_cpu="" client_cpus="" nginx_workers=auto
pin=()
client_pin=()
if [ "${PIN:-0}" = 1 ]; then
  last=$(($(nproc) - 1))
  [ "$last" -ge 1 ] || { echo "PIN=1 needs at least 2 CPUs" >&2; exit 1; }
  server_cpu=$last client_cpus="0-$((last - 1))" nginx_workers=1
  threads=$last
  pin=(taskset -c "$server_cpu")
  client_pin=(taskset -c "$client_cpus")
fi

for tool in wrk nginx python3 curl; do
  command -v "$tool" >/dev/null || {
    echo "$tool is needed (Debian: apt-get install wrk nginx-light python3 curl)" >&2; exit 1; }
done

echo "building roundhouse (release)" >&2
cargo build --release --quiet --locked --bin roundhouse
bin="${CARGO_TARGET_DIR:-target}/release/roundhouse"

work=$(mktemp -d)
# nginx workers may run as another user: they must be able to read the bodies.
chmod 0755 "$work"
nginx_pid=""
cleanup() {
  local pid
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; fi
  sleep 0.2
  rm -rf "$work"
}
trap cleanup EXIT

echo "load before: $(uptime)"

echo "generating and rendering $nodes nodes" >&2
python3 bench/gen-cluster.py "$nodes" "$work/cluster"
"$bin" render "$work/cluster/cluster.hcl" --out "$work/data" >/dev/null
groups=$(find "$work/data/groups" -name '*.json' | wc -l)
profiles=$(find "$work/data/profiles" -name '*.json' | wc -l)
ignition=$(find "$work/data/ignition" -type f | wc -l)
echo "data directory: $groups groups, $profiles profiles, $ignition Ignition files" >&2

# Every node's MAC in hyphen form (what iPXE sends, and safe in file names and $arg_mac).
python3 - "$work/data/groups" > "$work/macs.txt" <<'PY'
import json, os, sys
macs = set()
for name in os.listdir(sys.argv[1]):
    with open(os.path.join(sys.argv[1], name)) as f:
        mac = json.load(f).get("selector", {}).get("mac")
    if mac:
        macs.add(mac.replace(":", "-"))
print("\n".join(sorted(macs)))
PY
mac_count=$(wc -l < "$work/macs.txt")

mkdir -p "$work/state"
python3 - "$work/macs.txt" > "$work/state/netboot.json" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    nodes = {m.strip(): {"netboot": "install-pending"} for m in f if m.strip()}
print(json.dumps({"format": "roundhouse-netboot/v1", "nodes": nodes}))
PY

status_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# start_server NAME RUST_LOG: sets $server_url and server_pids[NAME].
declare -A server_pids
start_server() {
  local name="$1" filter="$2" port=""
  mkdir -p "$work/state-$name"
  cp "$work/state/netboot.json" "$work/state-$name/"
  # Created here: the background job below opens it asynchronously, after the loop may read it.
  : > "$work/server-$name.log"
  RUST_LOG="$filter" "${pin[@]}" "$bin" serve --address 127.0.0.1:0 --data-path "$work/data" \
    --state-path "$work/state-$name" 2> "$work/server-$name.log" &
  server_pids[$name]=$!
  for _ in $(seq 1 600); do
    port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$work/server-$name.log")
    [ -n "$port" ] && break
    kill -0 "${server_pids[$name]}" 2>/dev/null || { cat "$work/server-$name.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$port" ] || { echo "roundhouse serve did not start" >&2; exit 1; }
  server_url="http://127.0.0.1:$port"
}

# The boot server as shipped (access log at info) and one without the access log.
start_server on info
server_on="$server_url"
loaded_kib=$(status_kib "${server_pids[on]}" VmRSS)
start_server off "info,roundhouse_boot::access=off"
server_off="$server_url"

echo "fetching $mac_count x 2 bodies from the boot server for nginx" >&2
python3 bench/fetch-bodies.py "$server_on" "$work/macs.txt" "$work/bodies"

# nginx: a test-local configuration on two free loopback ports (with and without an access
# log), unlimited keep-alive requests. No open_file_cache: caching 20,000 bodies' descriptors
# goes past the descriptor limit of many machines (20,000 here; nginx then answers 500 "Too
# many open files"), and the bodies are in the page cache anyway.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
mkdir -p "$work/nginx"
locations='
    location = /ignition { default_type application/json; try_files /ignition/$arg_mac =404; }
    location = /ipxe { default_type "text/plain; charset=utf-8"; try_files /ipxe/$arg_mac =404; }'
nginx_port_on=$(free_port)
nginx_port_off=$(free_port)
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes $nginx_workers;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  client_body_temp_path $work/nginx/client_body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  root $work/bodies;
  server {
    listen 127.0.0.1:$nginx_port_on;
    access_log $work/nginx/access.log;$locations
  }
  server {
    listen 127.0.0.1:$nginx_port_off;
    access_log off;$locations
  }
}
CONF
"${pin[@]}" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon on;'
for _ in $(seq 1 50); do [ -s "$work/nginx/nginx.pid" ] && break; sleep 0.1; done
nginx_pid=$(cat "$work/nginx/nginx.pid")
nginx_on="http://127.0.0.1:$nginx_port_on"
nginx_off="http://127.0.0.1:$nginx_port_off"

# All four must answer the same bytes before their speed means anything.
for mac in $(sed -n '1p;$p' "$work/macs.txt"); do
  for q in "/ignition?mac=$mac&os=installed" "/ipxe?mac=$mac"; do
    want=$(curl -fsS "$server_on$q" | sha256sum)
    for url in "$server_off" "$nginx_on" "$nginx_off"; do
      [ "$(curl -fsS "$url$q" | sha256sum)" = "$want" ] || {
        echo "$url$q: not the body of $server_on$q" >&2; exit 1; }
    done
  done
done

# run NAME URL PATH_FORMAT: prints the RESULT line of a measured wrk run (after a warm-up).
run() {
  local name="$1" url="$2" fmt="$3"
  "${client_pin[@]}" wrk -t"$threads" -c"$connections" -d2s -s bench/wrk-cycle.lua "$url" \
    -- "$work/macs.txt" "$fmt" >/dev/null
  "${client_pin[@]}" wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s bench/wrk-cycle.lua "$url" \
    -- "$work/macs.txt" "$fmt" > "$work/wrk-$name.txt"
  grep '^RESULT ' "$work/wrk-$name.txt"
}
field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }
# keep KEY RESULT: stores RESULT under KEY unless a round with more requests/s is there.
keep() {
  local old="${result[$1]:-}"
  if [ -z "$old" ] || awk -v a="$(field "$2" rps)" -v b="$(field "$old" rps)" 'BEGIN { exit !(a > b) }'; then
    result[$1]="$2"
  fi
}
ms() { awk -v x="$1" 'BEGIN { printf "%.2f ms", x / 1000 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

declare -A result
for route in ignition ipxe; do
  case $route in
    ignition) fmt='/ignition?mac=%s&os=installed' ;;
    ipxe) fmt='/ipxe?mac=%s' ;;
  esac
  for round in $(seq 1 "$rounds"); do
    echo "wrk: /$route, round $round of $rounds" >&2
    keep "$route.on.roundhouse" "$(run "$route-roundhouse-on" "$server_on" "$fmt")"
    keep "$route.on.nginx" "$(run "$route-nginx-on" "$nginx_on" "$fmt")"
    keep "$route.off.roundhouse" "$(run "$route-roundhouse-off" "$server_off" "$fmt")"
    keep "$route.off.nginx" "$(run "$route-nginx-off" "$nginx_off" "$fmt")"
  done
done

declare -A hwm
for setup in on off; do hwm[$setup]=$(status_kib "${server_pids[$setup]}" VmHWM); done
rss_end=$(status_kib "${server_pids[on]}" VmRSS)
nginx_hwm_kib=0
for p in $nginx_pid $(pgrep -P "$nginx_pid"); do
  nginx_hwm_kib=$((nginx_hwm_kib + $(status_kib "$p" VmHWM)))
done
metrics=$(curl -fsS "$server_on/metrics")

echo
pinning="not pinned"
[ -n "$server_cpu" ] && pinning="servers pinned to CPU $server_cpu, wrk to CPU $client_cpus"
echo "## roundhouse serve vs nginx: $mac_count nodes, wrk -t$threads -c$connections -d${seconds}s, best of $rounds, $pinning"
echo
echo "| route | access log | server | requests/s | p50 | p99 | non-2xx | socket errors | req/s vs nginx |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
declare -A met=([on]=yes [off]=yes)
for route in ignition ipxe; do
  for setup in on off; do
    n_rps=$(field "${result[$route.$setup.nginx]}" rps)
    for who in roundhouse nginx; do
      r="${result[$route.$setup.$who]}"
      rps=$(field "$r" rps)
      p99=$(field "$r" p99_us)
      non2xx=$(field "$r" non2xx)
      sockerr=$(field "$r" socket_errors)
      printf '| /%s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$route" "$setup" "$who" \
        "$rps" "$(ms "$(field "$r" p50_us)")" "$(ms "$p99")" "$non2xx" "$sockerr" \
        "$(awk -v a="$rps" -v b="$n_rps" 'BEGIN { printf "%.2f", a / b }')"
      if [ "$who" = roundhouse ]; then
        awk -v a="$rps" -v b="$n_rps" 'BEGIN { exit !(a >= b) }' || met[$setup]=no
        [ "$p99" -lt 5000 ] || met[$setup]=no
      fi
      [ "$non2xx" = 0 ] && [ "$sockerr" = 0 ] || met[$setup]=no
    done
  done
done
for setup in on off; do
  [ "${hwm[$setup]}" -lt $((100 * 1024)) ] || met[$setup]=no
done
echo
echo "roundhouse serve RSS: $(mib "$loaded_kib") once loaded, before any request;" \
  "peak (VmHWM) $(mib "${hwm[on]}") ($(mib "${hwm[off]}") for the instance without" \
  "access log); $(mib "$rss_end") at the end. nginx, all processes (VmHWM): $(mib "$nginx_hwm_kib")."
if [ -s "$work/nginx/error.log" ]; then
  echo "nginx error log (first lines):"
  head -n 3 "$work/nginx/error.log" | sed 's/^/  /'
fi
echo "boot server (access log on) metrics after the run:"
grep -E '^roundhouse_boot_(journal_dropped_total|index_groups|index_profiles) ' <<<"$metrics" |
  sed 's/^/  /'
grep -E '^roundhouse_boot_http_request_duration_seconds_(sum|count)\{route="(ignition|ipxe)"' \
  <<<"$metrics" | sed 's/^/  /'
echo "targets (>= nginx req/s, p99 < 5 ms, RSS < 100 MiB, no errors) met:" \
  "access log on (as shipped): ${met[on]}; access log off: ${met[off]}"
echo "load after: $(uptime)"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
