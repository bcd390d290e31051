#!/usr/bin/env bash
# Benchmark: render a 10,000-node cluster file (issue target: well under a second).
#   bench/render.sh [NODES]
# Measures, in one run with hyperfine: the full render of all nodes held in memory (printing
# one node's profile), and the full render written as a matchbox data directory (6 files per
# node) to a tmpfs-backed directory when /dev/shm exists.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-10000}"
command -v hyperfine >/dev/null || { echo "install hyperfine (apt-get install hyperfine)" >&2; exit 1; }
cargo build --release --quiet --locked
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen-cluster.py "$nodes" "$work/cluster"
out_base=/dev/shm
[ -d "$out_base" ] || out_base="$work"
out="$out_base/roundhouse-bench-$$"
trap 'rm -rf "$work" "$out"' EXIT
bin=${CARGO_TARGET_DIR:-target}/release/roundhouse
hyperfine --warmup 1 --runs 5 --export-markdown "$work/result.md" \
  -n "render ${nodes} nodes in memory" "$bin render $work/cluster/cluster.hcl --node worker-$((nodes-1)) --what profile >/dev/null" \
  -n "render ${nodes} nodes to a data dir" "$bin render $work/cluster/cluster.hcl --out $out >/dev/null"
cat "$work/result.md"
echo "peak RSS of one full render to a data dir:"
/usr/bin/time -f "%M KiB max RSS, %e s" "$bin" render "$work/cluster/cluster.hcl" --out "$out" >/dev/null
