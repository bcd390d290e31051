#!/usr/bin/env bash
# Crash-safety soak (issue 11): `roundhouse apply` killed with SIGKILL at random moments of a
# fleet-wide change on the simulated lab; every run must converge, no machine may be wiped
# twice for one config digest, and no controller may be wiped at all.
#
#   bench/crash-soak.sh [TRIALS] [WORKERS]        (defaults: 50 trials, 4 workers)
#
# One lab (1 controller + WORKERS workers) is started and installed with one apply. Three
# uninterrupted fleet-wide changes measure how long an apply takes (D, their median; they are
# checked like every trial). Then, per trial:
#
#   1. bump `revision=N` in snippets/worker.bu and snippets/controller.bu (workers re-provision
#      in place, the controller is held by on_controller_change = "hold");
#   2. start `apply --yes` in its own session and `kill -9` its process group after a delay drawn
#      uniformly from [0, D] (recorded, with what the apply had printed by then);
#   3. every RESUME_KILL_EVERY-th trial, kill the first re-run too (resume of a resume), after a
#      delay drawn from [0, what was left of D when the first kill landed] (at least 0.5 s);
#   4. run `apply` again until it exits 0 (at most MAX_RERUNS runs; each under a hard timeout);
#   5. check: `plan --detailed-exitcode` exits 0; `status --output json` shows every worker
#      installed on its desired digest with no intent left, the controller still on the digest it
#      was installed with (drift); the simulator's counters (control API, `GET /machines`): per
#      worker exactly one more Ignition run (an in-place re-provision is a reboot with the
#      first_boot flag, on which Ignition wipes and rewrites the root filesystem: one run = one
#      wipe), as many boots as Ignition runs, no PXE install, its last Ignition run applied the
#      bytes published for its new digest; per worker exactly one final-config fetch in the boot
#      server's journal; the controller's boots, installs and Ignition runs unchanged.
#
# Violations are printed as they are found (`VIOLATION trial N: ...`); the lab directory of the
# first five failing trials is copied to /tmp/soak-failure-N (the next free N; without the
# simulator's namespace mounts) with the trial's logs and the simulator's machine table. The summary goes to stdout and to $WORK/summary.txt; exit 1 if anything was violated.
#
# Environment:
#   ROUNDHOUSE=path      binary to test (default: `cargo build` and ${CARGO_TARGET_DIR:-target}/debug)
#   SEED=n               seed for the delays (default: from the clock; printed)
#   TIME_SCALE=f         lab time scale (default 0.02: a re-provision takes about a second)
#   RESUME_KILL_EVERY=n  kill the first re-run too on every n-th trial (default 5; 0 = never)
#   MAX_RERUNS=n         re-runs allowed after a kill before the trial fails (default 5)
#   IN_PLACE_TIMEOUT=s   apply --in-place-timeout (default 30, so a resume that cannot finish
#                        fails within the trial instead of after apply's default 20 minutes)
#   APPLY_TIMEOUT=s      hard limit per apply run, then it is killed (default 120)
#   KILL_RANGE=a:b       draw the first kill's delay from [a, b] seconds instead of [0, D]
#   KEEP=1               keep the work directory (lab and logs) after the run
set -uo pipefail
cd "$(dirname "$0")/.."

TRIALS="${1:-50}"
WORKERS="${2:-4}"
SEED="${SEED:-$(( $(date +%s%N) % 32768 ))}"
TIME_SCALE="${TIME_SCALE:-0.02}"
RESUME_KILL_EVERY="${RESUME_KILL_EVERY:-5}"
MAX_RERUNS="${MAX_RERUNS:-5}"
IN_PLACE_TIMEOUT="${IN_PLACE_TIMEOUT:-30}"
APPLY_TIMEOUT="${APPLY_TIMEOUT:-120}"
POLL=(--poll-initial 0.2 --poll-max 0.5)
MAX_FAILURE_COPIES=5

if [ -z "${ROUNDHOUSE:-}" ]; then
  cargo build --quiet --locked --bin roundhouse || { echo "crash-soak: cargo build failed" >&2; exit 2; }
  ROUNDHOUSE="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/roundhouse"
fi
R="$(realpath "$ROUNDHOUSE")"
[ -x "$R" ] || { echo "crash-soak: no roundhouse binary at $R" >&2; exit 2; }

WORK="$(mktemp -d /tmp/crash-soak.XXXXXX)"
LAB="$WORK/lab"
CLUSTER="$LAB/cluster.hcl"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
PGID_FILE="$WORK/running.pgid"
T0=$(date +%s.%N)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -s "$PGID_FILE" ]; then kill -9 -- "-$(cat "$PGID_FILE")" 2>/dev/null; fi
  if [ -f "$LAB/lab.json" ]; then "$R" lab down --dir "$LAB" >"$LOGS/lab-down.log" 2>&1; fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "crash-soak: kept $WORK" >&2
  else
    # Only after lab down: it unmounts the simulator's namespaces under the lab directory.
    if ! grep -q " $LAB" /proc/mounts; then rm -rf "$WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "crash-soak: interrupted" >&2; exit 130' INT TERM

sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
log() { printf '[%6.1fs] %s\n' "$(sub "$(date +%s.%N)" "$T0")" "$*" >&2; }
violations=0
declare -a violation_lines=() bad_trials=()
failure_copies=0
violate() {
  violations=$((violations + 1))
  violation_lines+=("trial $1: $2")
  printf '\n!!!!!!!! VIOLATION trial %s: %s\n\n' "$1" "$2" >&2
}
keep_evidence() { # trial
  [ "$failure_copies" -lt "$MAX_FAILURE_COPIES" ] || return 0
  failure_copies=$((failure_copies + 1))
  local n=1
  while [ -e "/tmp/soak-failure-$n" ]; do n=$((n + 1)); done   # never overwrite earlier evidence
  local dest="/tmp/soak-failure-$n"
  mkdir -p "$dest/lab"
  tar -C "$LAB" --exclude=./sim/ns -cf - . 2>/dev/null | tar -C "$dest/lab" -xf -
  cp -a "$LOGS/trial-$1".* "$dest/" 2>/dev/null
  sim_table >"$dest/machines.json" 2>/dev/null
  echo "trial $1, seed $SEED" >"$dest/README"
  log "evidence of trial $1 kept in $dest"
}

sim_table() { curl -fsS "http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["control"])' "$LAB/lab.json")/machines"; }

# apply LOG [KILL_AFTER]: runs apply in its own session; with KILL_AFTER, kill -9 its process
# group after that many seconds. Prints "rc seconds killed(0/1)".
run_apply() {
  local out="$1" kill_after="${2:-}" start end rc killed=0
  start=$(date +%s.%N)
  setsid timeout -s KILL "$APPLY_TIMEOUT" "$R" apply "$CLUSTER" --yes "${POLL[@]}" \
    --in-place-timeout "$IN_PLACE_TIMEOUT" >"$out" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PGID_FILE"
  if [ -n "$kill_after" ]; then
    sleep "$kill_after"
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 -- "-$pid" 2>/dev/null && killed=1
    fi
  fi
  wait "$pid"; rc=$?
  : >"$PGID_FILE"
  end=$(date +%s.%N)
  echo "$rc $(sub "$end" "$start") $killed"
}

# Where a killed apply was: before the plan was printed (loading, rendering, planning), between
# plan and the first node (publishing), trigger (some worker journaled but its reboot not yet
# recorded as triggered), wait (every worker triggered), after (every worker confirmed). Per
# worker: not-started, started, rebooting (the reboot was being sent), waiting (triggered),
# fetched (apply saw the fetch; checking /ignition_ran, removing it, confirming), done.
phase_of() { # log
  python3 - "$1" "$WORKERS" <<'EOF'
import sys, re
text = open(sys.argv[1], errors="replace").read()
workers = [f"worker-{i}" for i in range(1, int(sys.argv[2]) + 1)]
state = {}
for w in workers:
    s = "not-started"
    for line in text.splitlines():
        m = re.match(r"\S+Z (\S+)\s+(\S+)\s+(.*)", line)
        if not m or m.group(1) != w:
            continue
        kind, msg = m.group(2), m.group(3)
        if kind == "started": s = "started"
        elif msg.startswith("rebooting") or msg.startswith("resuming: no sign"): s = "rebooting"
        elif msg.startswith("waiting up to") or msg.startswith("resuming: the in-place"): s = "waiting"
        elif msg.startswith("fetched its new final config"): s = "fetched"
        elif kind == "succeeded": s = "done"
        elif kind == "failed": s = "failed"
    state[w] = s
vals = set(state.values())
if "NODE" not in text:
    phase = "before-plan"
elif vals == {"not-started"}:
    phase = "publish"
elif vals & {"started", "rebooting", "not-started"}:
    phase = "trigger"
elif vals <= {"done"}:
    phase = "after"
else:
    phase = "wait"
print(phase, " ".join(f"{w}={s}" for w, s in state.items()))
EOF
}

# What the re-runs did, per worker: which resume branch (or a fresh start).
resume_kinds() { # logs...
  python3 - "$@" <<'EOF'
import sys, re, collections
c = collections.Counter()
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        m = re.match(r"\S+Z (\S+)\s+(\S+)\s+(.*)", line)
        if not m: continue
        kind, msg = m.group(2), m.group(3)
        if kind == "started": c["started:" + msg.split()[0]] += 1
        elif msg.startswith("resuming: the in-place re-provision") and "triggered" in msg: c["resume-triggered-wait"] += 1
        elif msg.startswith("resuming: the node already fetched"): c["resume-already-fetched"] += 1
        elif msg.startswith("resuming: the node rebooted and fetched"): c["resume-rebooted-meanwhile"] += 1
        elif msg.startswith("resuming: no sign the reboot happened"): c["resume-reboot-again"] += 1
        elif kind == "failed": c["failed"] += 1
print(" ".join(f"{k}={v}" for k, v in sorted(c.items())) or "-")
EOF
}

# snapshot FILE: simulator counters, status and fetch-journal counts, for check().
snapshot() {
  sim_table >"$1.sim" && "$R" status "$CLUSTER" --output json >"$1.status" 2>"$1.status.err"
}

# check TRIAL BEFORE AFTER CONTROLLER_DIGEST: the invariants after a converged trial.
check() {
  local trial="$1" before="$2" after="$3" ctl="$4" out
  "$R" plan "$CLUSTER" --detailed-exitcode >"$after.plan" 2>&1
  local prc=$?
  [ "$prc" = 0 ] || violate "$trial" "plan --detailed-exitcode exited $prc after convergence: $(grep -v '^$' "$after.plan" | tail -n 8 | tr '\n' '|')"
  out="$(python3 - "$before" "$after" "$ctl" "$LAB" <<'EOF'
import json, sys, os
before, after, ctl, lab = sys.argv[1:5]
sim0 = {m["name"]: m for m in json.load(open(before + ".sim"))}
sim1 = {m["name"]: m for m in json.load(open(after + ".sim"))}
st = {n["name"]: n for n in json.load(open(after + ".status"))["nodes"]}
published = json.load(open(os.path.join(lab, "assets/published-configs.json")))
# Final-config fetches per node since the trial began (the journal and its rotated copy).
start = open(before + ".t").read().strip()
fetches = {}
bs = os.path.join(lab, "assets/boot-state")
for f in ("fetch-journal.jsonl.1", "fetch-journal.jsonl"):
    p = os.path.join(bs, f)
    if not os.path.exists(p): continue
    for line in open(p):
        try: e = json.loads(line)
        except ValueError: continue
        if e.get("route") == "ignition" and e.get("group") and e.get("time", "") >= start:
            fetches.setdefault(e["group"], []).append(e.get("digest"))
bad = []
for name, m1 in sim1.items():
    m0, s = sim0[name], st[name]
    d = {k: m1[k] - m0[k] for k in ("boots", "installs", "ignition_runs")}
    if s["role"] == "controller":
        if any(d.values()):
            bad.append(f"{name} (controller) was touched: boots +{d['boots']}, installs +{d['installs']}, ignition runs +{d['ignition_runs']}")
        if s["applied_digest"] != ctl:
            bad.append(f"{name} (controller) applied digest {s['applied_digest']} != {ctl} it was installed with")
        if fetches.get(name):
            bad.append(f"{name} (controller) fetched its final config {len(fetches[name])} time(s)")
        continue
    if d["ignition_runs"] != 1:
        bad.append(f"{name}: {d['ignition_runs']} Ignition runs (wipes) for one digest (want 1)")
    if d["installs"] != 0:
        bad.append(f"{name}: {d['installs']} PXE install(s) during an in-place change")
    if d["boots"] != d["ignition_runs"]:
        bad.append(f"{name}: {d['boots']} boots but {d['ignition_runs']} Ignition runs")
    if s["state"] != "installed" or s["applied_digest"] != s["desired_digest"] or s["pending_intent"]:
        bad.append(f"{name}: status state={s['state']} applied={s['applied_digest']} desired={s['desired_digest']} intent={s['pending_intent']}")
    want = published.get(s["desired_digest"])
    got = (m1.get("last_ignition") or {}).get("sha256")
    if want is None or "sha256:" + str(got) != want:
        bad.append(f"{name}: last Ignition applied {got}, published bytes for its digest are {want}")
    if len(fetches.get(name, [])) != 1:
        bad.append(f"{name}: {len(fetches.get(name, []))} final-config fetches in this trial (want 1)")
for b in bad: print(b)
EOF
)"
  if [ -n "$out" ]; then
    while IFS= read -r line; do violate "$trial" "$line"; done <<<"$out"
  fi
  [ -z "$out" ] && [ "$prc" = 0 ]
}

bump() { # revision
  sed -i -E "s/revision=[0-9]+/revision=$1/" "$LAB/snippets/worker.bu" "$LAB/snippets/controller.bu"
}

now_utc() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }

# --- the lab ---------------------------------------------------------------------------------
log "binary $R, seed $SEED, $TRIALS trials, 1 controller + $WORKERS workers, time scale $TIME_SCALE"
RANDOM=$SEED
"$R" lab up --dir "$LAB" --controllers 1 --workers "$WORKERS" --time-scale "$TIME_SCALE" \
  >"$LOGS/lab-up.log" 2>&1 || { cat "$LOGS/lab-up.log" >&2; echo "crash-soak: lab up failed" >&2; exit 2; }
read -r rc secs _ < <(run_apply "$LOGS/install.log")
if [ "$rc" != 0 ]; then tail -n 30 "$LOGS/install.log" >&2; echo "crash-soak: the first install failed (exit $rc)" >&2; exit 2; fi
log "installed in ${secs}s"
"$R" status "$CLUSTER" --output json >"$LOGS/install.status"
CTL_DIGEST="$(python3 -c 'import json,sys; print([n for n in json.load(open(sys.argv[1]))["nodes"] if n["role"]=="controller"][0]["applied_digest"])' "$LOGS/install.status")"
rev=1

# --- uninterrupted applies: how long one takes ------------------------------------------------
MEASURED=""
for m in 1 2 3; do
  rev=$((rev + 1)); bump "$rev"
  base="$LOGS/measure-$m"
  now_utc >"$base.before.t"; snapshot "$base.before"
  read -r rc secs _ < <(run_apply "$base.apply.log")
  [ "$rc" = 0 ] || violate "measure-$m" "uninterrupted apply exited $rc: $(tail -n 3 "$base.apply.log" | tr '\n' '|')"
  snapshot "$base.after"
  check "measure-$m" "$base.before" "$base.after" "$CTL_DIGEST" >/dev/null
  log "uninterrupted fleet-wide apply $m: ${secs}s (exit $rc)"
  MEASURED="$MEASURED $secs"
done
MEASURED="${MEASURED# }"
D=$(printf '%s\n' $MEASURED | sort -n | sed -n 2p)   # the median of the three
KMIN=0 KMAX=$D
if [ -n "${KILL_RANGE:-}" ]; then KMIN="${KILL_RANGE%%:*}" KMAX="${KILL_RANGE##*:}"; fi
log "kill delays drawn uniformly from [${KMIN}s, ${KMAX}s]"

# --- trials ----------------------------------------------------------------------------------
declare -A phase_count=() worker_state_count=() rerun_hist=()
delays=()
total_reruns=0
resume_kills=0
resume_kill_tries=0
rerun_failures=0
all_resume_logs=()
for ((t = 1; t <= TRIALS; t++)); do
  rev=$((rev + 1)); bump "$rev"
  base="$LOGS/trial-$t"
  now_utc >"$base.before.t"
  snapshot "$base.before" || { violate "$t" "cannot read the simulator or status before the trial"; continue; }
  delay=$(printf '%d %s %s' "$RANDOM" "$KMIN" "$KMAX" | awk '{printf "%.3f", $2 + $1 / 32767 * ($3 - $2)}')
  delays+=("$delay")
  read -r rc secs killed < <(run_apply "$base.kill.log" "$delay")
  read -r phase states < <(phase_of "$base.kill.log")
  [ "$killed" = 1 ] || phase="exited-first(rc=$rc)"
  phase_count[$phase]=$(( ${phase_count[$phase]:-0} + 1 ))
  for s in $states; do worker_state_count[${s#*=}]=$(( ${worker_state_count[${s#*=}]:-0} + 1 )); done
  note="killed at ${delay}s: $phase [$states]"
  runs=0
  converged=0
  second=""
  while [ "$runs" -lt "$MAX_RERUNS" ]; do
    runs=$((runs + 1))
    rlog="$base.rerun-$runs.log"
    all_resume_logs+=("$rlog")
    if [ "$runs" = 1 ] && [ "$RESUME_KILL_EVERY" -gt 0 ] && [ $((t % RESUME_KILL_EVERY)) = 0 ]; then
      # A resume only has what the killed run left to do: draw from [0, what was left of D].
      d2=$(printf '%d %s %s' "$RANDOM" "$D" "$delay" \
        | awk '{left = $2 - $3; if (left < 0.5) left = 0.5; printf "%.3f", $1 / 32767 * left}')
      read -r rc2 secs2 killed2 < <(run_apply "$rlog" "$d2")
      resume_kill_tries=$((resume_kill_tries + 1))
      if [ "$killed2" = 1 ]; then
        resume_kills=$((resume_kills + 1))
        read -r p2 _ < <(phase_of "$rlog")
        second="; resume killed at ${d2}s ($p2)"
        continue
      fi
      second="; resume kill at ${d2}s missed (it exited $rc2 after ${secs2}s)"
      rc=$rc2
    else
      read -r rc secs2 _ < <(run_apply "$rlog")
    fi
    if [ "$rc" = 0 ]; then converged=1; break; fi
    rerun_failures=$((rerun_failures + 1))
    log "trial $t: re-run $runs exited $rc: $(grep -E 'FAILED|failed|error' "$rlog" | tail -n 3 | tr '\n' '|')"
  done
  rerun_hist[$runs]=$(( ${rerun_hist[$runs]:-0} + 1 ))
  total_reruns=$((total_reruns + runs))
  snapshot "$base.after"
  ok=1
  if [ "$converged" != 1 ]; then
    violate "$t" "did not converge: $runs re-runs, the last exited $rc ($(tail -n 3 "$rlog" | tr '\n' '|'))"
    ok=0
  fi
  check "$t" "$base.before" "$base.after" "$CTL_DIGEST" || ok=0
  [ "$ok" = 1 ] || { keep_evidence "$t"; bad_trials+=("$t"); }
  log "trial $t/$TRIALS: $note$second; $runs re-run(s); $(resume_kinds "$base".rerun-*.log)$([ "$ok" = 1 ] || echo '; VIOLATION')"
done

# --- summary ---------------------------------------------------------------------------------
wall=$(sub "$(date +%s.%N)" "$T0")
{
  echo "crash-soak summary ($(date -u +%Y-%m-%dT%H:%MZ), seed $SEED, $(git rev-parse --short HEAD 2>/dev/null))"
  echo "  lab: 1 controller + $WORKERS workers, time scale $TIME_SCALE; uninterrupted applies ${MEASURED}s; kill delays from [${KMIN}, ${KMAX}]s"
  echo "  trials: $TRIALS; resume killed too on every ${RESUME_KILL_EVERY}th: $resume_kills of $resume_kill_tries landed before the resume finished"
  printf '  kill delays (s): %s\n' "$(printf '%s\n' "${delays[@]}" | sort -n | awk '{a[NR]=$1} END {if (NR) printf "min %.3f, p25 %.3f, median %.3f, p75 %.3f, max %.3f", a[1], a[int(NR*0.25)+1], a[int(NR*0.5)+1], a[int(NR*0.75)+1], a[NR]}')"
  printf '  kill landed:'; for k in before-plan publish trigger wait after; do printf ' %s=%s' "$k" "${phase_count[$k]:-0}"; done
  for k in "${!phase_count[@]}"; do case $k in before-plan|publish|trigger|wait|after) ;; *) printf ' %s=%s' "$k" "${phase_count[$k]}";; esac; done; echo
  printf '  workers at the kill:'; for k in not-started started rebooting waiting fetched done failed; do printf ' %s=%s' "$k" "${worker_state_count[$k]:-0}"; done; echo
  printf '  re-runs per trial:'; for k in $(printf '%s\n' "${!rerun_hist[@]}" | sort -n); do printf ' %s:%s' "$k" "${rerun_hist[$k]}"; done
  echo " (total $total_reruns, $rerun_failures exited non-zero)"
  echo "  what the re-runs did per worker: $(resume_kinds "${all_resume_logs[@]}")"
  echo "  violations: $violations, in ${#bad_trials[@]} trial(s)${bad_trials[*]:+: ${bad_trials[*]}}"
  for v in "${violation_lines[@]}"; do echo "    $v"; done
  printf '  wall time: %.0fs\n' "$wall"
} | tee "$WORK/summary.txt"
[ "$violations" = 0 ]
