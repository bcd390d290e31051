#!/usr/bin/env bash
# Benchmark: `plan` of a large fleet whose state is in the embedded store vs in PostgreSQL
# (issue 12's target: under 1 s on both at 10,000 nodes), side by side in one hyperfine run.
#   bench/plan-pg.sh [NODES]            (default 10000)
# Every node gets a record (import-lokomotive flag files), the embedded store is copied into a
# throwaway PostgreSQL with `roundhouse state migrate --to`, then both plans are timed.
# Needs root (the server runs as user postgres), postgresql-15 and hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-10000}"
command -v hyperfine >/dev/null || { echo "install hyperfine (apt-get install hyperfine)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (the server runs as user postgres)" >&2; exit 1; }
pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}
[ -x "$pgbin/initdb" ] || { echo "install postgresql-15 (or set PGBIN)" >&2; exit 1; }
cargo build --release --quiet --locked --bin roundhouse
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/roundhouse")
work=$(mktemp -d /tmp/rh-plan-pg.XXXXXX)
as_pg="setpriv --reuid=postgres --regid=postgres --init-groups --reset-env"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -d "$work/pg/data" ] && $as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/pg/sock"
chown -R postgres:postgres "$work/pg"
chmod 755 "$work"
$as_pg "$pgbin/initdb" -D "$work/pg/data" -U postgres --auth=trust --encoding=UTF8 \
  --locale=C.UTF-8 --no-sync >/dev/null
# Production-like durability (fsync on), unlike the tests' throwaway servers.
$as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w -t 30 \
  -o "-p $port -k $work/pg/sock -c listen_addresses=''" start >/dev/null
"$pgbin/psql" -h "$work/pg/sock" -p "$port" -U postgres -qc "create database roundhouse" >/dev/null

python3 bench/gen-cluster.py "$nodes" "$work/c" >/dev/null
cd "$work/c"
mkdir -p flags/cluster-assets
python3 - cluster.hcl flags/cluster-assets <<'EOF'
import re, sys, os
text = open(sys.argv[1]).read()
for mac, dom in re.findall(r'mac\s*=\s*"([^"]+)"\s*\n\s*domain\s*=\s*"([^"]+)"', text):
    open(os.path.join(sys.argv[2], mac), "w").write(dom + "\n")
EOF
"$bin" import-lokomotive cluster.hcl flags >/dev/null
url="postgres://postgres@$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$work/pg/sock"):$port/roundhouse"
/usr/bin/time -f "state migrate --to of $nodes records: %e s, %M KiB max RSS" \
  "$bin" state migrate cluster.hcl --to "$url" >/dev/null
# Both must read the records: no node may be planned as a fresh install.
for env in "" "ROUNDHOUSE_STATE_URL=$url"; do
  fresh=$(env $env "$bin" plan cluster.hcl --output json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["provision"])')
  [ "$fresh" = 0 ] || { echo "plan ${env:+on PostgreSQL }did not read the records ($fresh provision)" >&2; exit 1; }
done
hyperfine --warmup 1 --runs 5 --export-markdown "$work/result.md" \
  -n "plan, $nodes records, embedded" "$bin plan cluster.hcl >/dev/null 2>&1" \
  -n "plan, $nodes records, PostgreSQL" "ROUNDHOUSE_STATE_URL='$url' $bin plan cluster.hcl >/dev/null 2>&1" >&2
cat "$work/result.md"
