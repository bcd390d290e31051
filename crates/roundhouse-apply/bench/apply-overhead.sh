#!/usr/bin/env bash
# Benchmark: the orchestration overhead of `roundhouse apply`: N nodes PXE-installed at
# --max-parallel P, each "machine" taking T seconds from power-on to fetching its config.
# The ideal wall time is ceil(N/P) × T; the script prints the measured time beside it.
#   crates/roundhouse-apply/bench/apply-overhead.sh [N] [P] [T]     (defaults 1000 100 2)
# POLL_INITIAL and POLL_MAX (seconds, default 0.5 and 2) set apply's poll backoff.
#
# Peers are real: `roundhouse serve` (release build), one OpenSSH sshd answering for every
# node (all nodes get the same host key, pre-placed in the keys directory, and domains
# 127.0.x.y on one port), and a power command per node (a shell script that sleeps T, then
# fetches the node's final config from the boot server with curl; the first one also starts
# the sshd: machines that are off answer no SSH). The sshd runs in a mount
# namespace over an overlay of / where /ignition_ran exists and `sudo` ignores `rm`, so every
# node's wait sees the flag. Needs root, openssh-server, curl, util-linux.
set -euo pipefail
n="${1:-1000}"
p="${2:-100}"
t="${3:-2}"
root="$(cd "$(dirname "$0")/../../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release --quiet --bin roundhouse --manifest-path "$root/Cargo.toml"
bin="$CARGO_TARGET_DIR/release/roundhouse"
[ "$(id -u)" = 0 ] || { echo "run as root (mount namespaces)" >&2; exit 1; }
for tool in /usr/sbin/sshd curl unshare ssh-keygen python3; do
  command -v "$tool" >/dev/null || { echo "$tool missing (Debian: openssh-server curl util-linux python3)" >&2; exit 1; }
done

work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
mkdir -p assets/matchbox assets/boot-state assets/keys/hosts ns

"$bin" serve --address 127.0.0.1:0 --data-path assets/matchbox --state-path assets/boot-state \
  --reload-interval 0.2 2> serve.log &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" serve.log 2>/dev/null && break; sleep 0.05; done
boot="$(sed -n 's/^listening on //p' serve.log | head -1)"
ssh_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

ssh-keygen -q -t ed25519 -N "" -C shared-host-key -f host_key
cat > power.sh <<EOF
#!/bin/sh
touch "$work/powered"
( sleep $t; curl -fsS "$boot/ignition?mac=\$mac&os=installed" -o /dev/null ) </dev/null >/dev/null 2>&1 &
EOF
chmod 755 power.sh
python3 - "$n" "$boot" "$ssh_port" "$work/power.sh" > cluster.hcl <<'EOF'
import sys
n, boot, port, power = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
print('cluster {\n  name = "bench"\n  asset_dir = "assets"')
print('  ssh_pubkeys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml bench@example"]')
print(f'  boot_server_http = "{boot}"\n  pxe_command = "{power}"\n}}')
for i in range(n):
    print(f'node "w{i}" {{\n  role = "worker"\n  mac = "52:54:00:10:{i // 256:02x}:{i % 256:02x}"')
    print(f'  domain = "127.0.{1 + i // 250}.{1 + i % 250}"\n  ssh_port = {port}\n}}')
EOF
for i in $(seq 0 $((n - 1))); do
  mkdir -p "assets/keys/hosts/w$i"
  cp host_key "assets/keys/hosts/w$i/ssh_host_ed25519_key"
  cp host_key.pub "assets/keys/hosts/w$i/ssh_host_ed25519_key.pub"
done
"$bin" render cluster.hcl > /dev/null   # generates the operator key

cat > sshd_config <<EOF
ListenAddress 0.0.0.0:$ssh_port
HostKey $work/host_key
AuthorizedKeysFile $work/assets/keys/operator_ed25519.pub
PidFile none
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 1000
MaxSessions 1000
LogLevel ERROR
EOF
cat > node.sh <<'EOF'
#!/bin/sh
set -e
W=$1
mount -t tmpfs tmpfs "$W"
mkdir -p "$W/u" "$W/w" "$W/root"
mount -t overlay overlay -o lowerdir=/,upperdir="$W/u",workdir="$W/w" "$W/root"
R="$W/root"
for d in proc dev sys run tmp; do mount --rbind "/$d" "$R/$d"; done
echo 'core:x:0:0:core:/root:/bin/sh' >> "$R/etc/passwd"
mkdir -p "$R/run/sshd"
touch "$R/ignition_ran"
printf '#!/bin/sh\n[ "$1" = rm ] && exit 0\nexec "$@"\n' > "$R/usr/local/bin/sudo"
chmod 755 "$R/usr/local/bin/sudo"
exec chroot "$R" /usr/sbin/sshd -D -e -f "$2"
EOF
chmod 755 node.sh
# The machines are off until their first power action: nothing answers SSH before (an answer
# with a node's managed host key would be evidence of an earlier install to `apply`, which then
# refuses to reinstall it). The first power action "boots" the shared sshd.
( while [ ! -e "$work/powered" ]; do sleep 0.05; done
  exec unshare -m --propagation private ./node.sh "$work/ns" "$work/sshd_config" 2> sshd.log ) &
pids+=($!)

start=$(date +%s.%N)
set +e
/usr/bin/time -f "apply's own CPU: user %U s, system %S s" \
  "$bin" apply cluster.hcl --yes --max-parallel "$p" \
  --poll-initial "${POLL_INITIAL:-0.5}" --poll-max "${POLL_MAX:-2}" \
  --connect-timeout 10 --pxe-timeout 600 > apply.out 2> apply.err
rc=$?
set -e
end=$(date +%s.%N)
tail -2 apply.err | sed 's/^/  /' >&2 || true
cp apply.err "${TMPDIR:-/tmp}/apply-overhead.err"   # the per-node timeline, for a closer look
python3 - "$n" "$p" "$t" "$start" "$end" "$rc" <<'EOF'
import math, sys
n, p, t = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
wall = float(sys.argv[5]) - float(sys.argv[4])
ideal = math.ceil(n / p) * t
print(f"| nodes | max_parallel | node time | ideal | measured | overhead | exit |")
print(f"|---|---|---|---|---|---|---|")
print(f"| {n} | {p} | {t:g} s | {ideal:g} s | {wall:.1f} s | {wall - ideal:+.1f} s ({(wall / ideal - 1) * 100:.0f}%) | {sys.argv[6]} |")
EOF
# How long each node waited for its intent to be journaled (durably) before its power action:
# from its `started` line to its "running the power action" line. Store commits were the
# queue here before writes were group-committed.
python3 - apply.err <<'EOF2'
import datetime, statistics, sys
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
started, power = {}, {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 4 or not parts[0][:4].isdigit():
        continue
    if parts[2] == "started":
        started[parts[1]] = ts(parts[0])
    elif parts[2] == "step" and parts[3] == "running" and "power" in line:
        power.setdefault(parts[1], ts(parts[0]))
d = sorted(power[n] - started[n] for n in power if n in started)
if d:
    print(f"intent journaled before the power action: median {statistics.median(d) * 1000:.0f} ms, "
          f"p90 {d[int(len(d) * 0.9)] * 1000:.0f} ms, max {d[-1] * 1000:.0f} ms ({len(d)} nodes)")
EOF2
