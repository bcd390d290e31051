#!/usr/bin/env bash
# Benchmark: what looking for evidence of earlier installations costs `plan` (issue 11).
#   bench/plan-evidence.sh [NODES]            (default 10000)
#   BASE=/path/to/older/roundhouse bench/plan-evidence.sh   side by side with another build
# Three situations, each timed with hyperfine in one run (and the BASE build beside it):
#   fresh, no route: no state store, node addresses unroutable (connects fail at once);
#   fresh, powered off: no state store, every node's address on a link where nothing answers
#     ARP (a veth into an empty network namespace: the TCP connect waits for its bound),
#     which is what a new rack that is still off looks like;
#   recorded: every node has a record (import-lokomotive flag files), so nothing is probed.
# Needs root (ip netns) and hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-10000}"
command -v hyperfine >/dev/null || { echo "install hyperfine (apt-get install hyperfine)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (ip netns)" >&2; exit 1; }
cargo build --release --quiet --locked --bin roundhouse
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/roundhouse")
work=$(mktemp -d)
ns=rh-bench-$$
cleanup() {
  ip link del rhb0-$$ 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
python3 bench/gen-cluster.py "$nodes" "$work/c" >/dev/null
cd "$work/c"
# Powered-off addresses: 10.77.0.0/16 routed into a namespace with no addresses.
sed 's/domain = "10\.0\./domain = "10.77./' cluster.hcl > off.hcl
ip netns add "$ns"
ip link add rhb0-$$ type veth peer name rhb1 netns "$ns"
ip addr add 10.77.255.254/16 dev rhb0-$$
ip link set rhb0-$$ up
ip -n "$ns" link set rhb1 up
"$bin" plan cluster.hcl >/dev/null 2>&1 || true   # generates the keys once
# Records for every node, for the third situation (a copy of the asset dir).
mkdir -p rec/cluster-assets
python3 - cluster.hcl rec/cluster-assets <<'EOF'
import re, sys, os
text = open(sys.argv[1]).read()
for mac, dom in re.findall(r'mac\s*=\s*"([^"]+)"\s*\n\s*domain\s*=\s*"([^"]+)"', text):
    open(os.path.join(sys.argv[2], mac), "w").write(dom + "\n")
EOF
sed 's/asset_dir        = "assets"/asset_dir        = "recorded"/' cluster.hcl > recorded.hcl
cp -a assets recorded
"$bin" import-lokomotive recorded.hcl rec >/dev/null
cmds=()
for b in "$bin" ${BASE:+"$BASE"}; do
  tag=new; [ "$b" = "$bin" ] || tag=base
  cmds+=(-n "$tag: fresh, no route" "$b plan cluster.hcl >/dev/null 2>&1"
         -n "$tag: fresh, powered off" "$b plan off.hcl >/dev/null 2>&1"
         -n "$tag: recorded" "$b plan recorded.hcl >/dev/null 2>&1")
done
hyperfine --warmup 1 --runs 5 -i --export-markdown "$work/result.md" "${cmds[@]}" >&2
cat "$work/result.md"
