#!/usr/bin/env bash
# Issue 14 in one run: every figure it asks for, side by side and as ratios to roster, with the
# commit and the machine on top (bench/README.md, "Issue 14 in one run").
#
#   bench/issue14.sh [--quick] [--build] [--with-forwarder] [--steps compare,propagation,...] [--report-only]
#
# Runs in turn, each bounded by `timeout` (SIGTERM, then SIGKILL 300 s later, fanout 60 s):
#   compare      bench/compare.sh [--quick]: roster, Knot, NSD, CoreDNS on one core, small and large,
#                mixed and NXDOMAIN: qps, CPU/query, instructions/query, p99, RSS, B/RR, start-up
#   propagation  bench/propagation_real.py [--quick]: real control plane, roster against CoreDNS
#   watchers     bench/watchers_real.py [--quick]: kube-apiserver's watches with 0/10/1,000 subscribers
#   fanout       target/release/examples/fanout 1000 10000 10 50 zstd 200 (--quick: 100 1000 10 10 zstd 200)
#   forward      bench/forward.sh --rounds 1 (only with --with-forwarder)
# then bench/lib/issue14_report.py, which prints the report and writes bench/results/issue14-latest.txt.
#
# --quick           each piece's smoke size (8 min here; the full sizes take about an hour)
# --build           cargo build --release, and the fanout example, first
# --with-forwarder  also the forwarder against Unbound and dnsdist (installs them if missing)
# --steps LIST      run only these steps (the others' outputs from an earlier run are reported as they are)
# --report-only     run nothing; report from the work dir
# Outputs of every piece go to $BENCH_WORKDIR/issue14 (default /tmp/roster-bench/issue14); the pieces'
# own results files in bench/results/ are not touched. Loopback only; every process is stopped by PID.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
WORK="${BENCH_WORKDIR:-/tmp/roster-bench}/issue14"
ARGV="bench/issue14.sh $*"

quick=0
build=0
forwarder=0
steps=""
explicit_steps=0
report_only=0
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --build) build=1 ;;
    --with-forwarder) forwarder=1 ;;
    --steps) steps="$2"; explicit_steps=1; shift ;;
    --steps=*) steps="${1#--steps=}"; explicit_steps=1 ;;
    --report-only) report_only=1 ;;
    -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "issue14.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $steps ]]; then
  steps="compare,propagation,watchers,fanout"
  ((forwarder)) && steps+=",forward"
fi
((report_only)) && steps=""
wants() { [[ ",$steps," == *",$1,"* ]]; }
for s in ${steps//,/ }; do
  case "$s" in
    compare|propagation|watchers|fanout|forward) ;;
    *) echo "issue14.sh: unknown step $s (compare, propagation, watchers, fanout, forward)" >&2; exit 2 ;;
  esac
done

mkdir -p "$WORK"
QUICK=(); ((quick)) && QUICK=(--quick)
ROSTER="${ROSTER_BIN:-$REPO/target/release/roster}"
FANOUT="${FANOUT_BIN:-$REPO/target/release/examples/fanout}"

commit() {
  local c
  c="$(git -C "$REPO" rev-parse --short HEAD)"
  [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]] && c+="+dirty"
  echo "$c"
}

if [[ -n $steps ]]; then
  if ((build)); then
    (cd "$REPO" && cargo build --release && cargo build --release -p roster-controller --example fanout)
  fi
  bins=("$ROSTER")
  if wants fanout; then bins+=("$FANOUT"); fi
  for bin in "${bins[@]}"; do
    [[ -x $bin ]] || { echo "issue14.sh: no $bin: cargo build --release (and -p roster-controller --example fanout), or --build" >&2; exit 2; }
  done
  # What the report's header says about this invocation (a rerun of some steps only adds a line).
  if ((explicit_steps)) && [[ -s "$WORK/run.txt" ]]; then
    echo "rerun=$(date -u +%Y-%m-%dT%H:%M:%SZ) $(commit): $ARGV" >>"$WORK/run.txt"
  else {
    echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit=$(commit)"
    echo "argv=$ARGV"
    echo "quick=$quick"
    echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "steps=$steps"
    for bin in "${bins[@]}"; do
      echo "binary=${bin#"$REPO"/} built $(date -u -r "$bin" '+%Y-%m-%d %H:%M:%S') UTC"
    done
  } >"$WORK/run.txt"
  fi
fi

# run_step NAME BOUND_S own|group COMMAND...: output to the terminal and NAME.log; one line in steps.tsv
# (step, exit code, start UTC, seconds, commit, quick, command). The step runs in the background so that
# SIGINT/SIGTERM to this script reach it through `timeout` (which passes them on to the step's processes);
# `tail --pid` shows its output as it comes.
failed=()
current=""
on_signal() {
  if [[ -n $current ]]; then
    kill -TERM "$current" 2>/dev/null || true
    wait "$current" 2>/dev/null || true
  fi
  echo "issue14.sh: interrupted" >&2
  exit 130
}
trap on_signal INT TERM
run_step() {
  local name=$1 bound=$2 mode=$3 started at t0 rc follow
  shift 3
  started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  at="$(commit)"
  t0=$(date +%s)
  echo "== $started $name (bound ${bound} s): $*"
  : >"$WORK/$name.log"
  # --foreground: the signal goes to the piece alone, which stops what it started (servers, the cluster)
  # itself; a signal to the whole process group would also kill `cluster.sh down` halfway. fanout has
  # nothing to stop but its subscriber child: its group is signalled.
  if [[ $mode == own ]]; then
    timeout --foreground --signal=TERM --kill-after=300 "$bound" "$@" >"$WORK/$name.log" 2>&1 </dev/null &
  else
    timeout --signal=TERM --kill-after=60 "$bound" "$@" >"$WORK/$name.log" 2>&1 </dev/null &
  fi
  current=$!
  tail -n +1 -f --pid="$current" "$WORK/$name.log" &
  follow=$!
  rc=0
  wait "$current" || rc=$?
  current=""
  wait "$follow" || true
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$started" "$(($(date +%s) - t0))" "$at" "$quick" "$*" \
    >>"$WORK/steps.tsv"
  if ((rc != 0)); then
    echo "== $name failed (exit $rc$( ((rc == 124)) && echo ": bound reached"))" >&2
    failed+=("$name")
  fi
}

if wants compare; then
  rm -rf "$WORK/compare"
  mkdir -p "$WORK/compare"
  run_step compare $((quick ? 2700 : 9000)) own \
    "$HERE/compare.sh" "${QUICK[@]+"${QUICK[@]}"}" --results "$WORK/compare"
fi
if wants propagation; then
  rm -f "$WORK/propagation.json"
  run_step propagation $((quick ? 1200 : 3600)) own \
    python3 "$HERE/propagation_real.py" "${QUICK[@]+"${QUICK[@]}"}" --json "$WORK/propagation.json"
fi
if wants watchers; then
  rm -f "$WORK/watchers.json"
  run_step watchers $((quick ? 1200 : 3600)) own \
    python3 "$HERE/watchers_real.py" "${QUICK[@]+"${QUICK[@]}"}" --json "$WORK/watchers.json"
fi
if wants fanout; then
  if ((quick)); then
    run_step fanout 900 group "$FANOUT" 100 1000 10 10 zstd 200
  else
    run_step fanout 2700 group "$FANOUT" 1000 10000 10 50 zstd 200
  fi
fi
if wants forward; then
  FWD_INSTALL=()
  export PATH="$PATH:/usr/sbin"
  for tool in unbound dnsdist dnsperf knotd; do
    command -v "$tool" >/dev/null || FWD_INSTALL=(--install)
  done
  rm -rf "$WORK/forward"
  mkdir -p "$WORK/forward"
  run_step forward 2700 own "$HERE/forward.sh" "${FWD_INSTALL[@]+"${FWD_INSTALL[@]}"}" --rounds 1 \
    --results "$WORK/forward"
fi

python3 "$HERE/lib/issue14_report.py" --workdir "$WORK" --out "$REPO/bench/results/issue14-latest.txt"
if ((${#failed[@]})); then
  echo "issue14.sh: failed steps: ${failed[*]} (logs in $WORK)" >&2
  exit 1
fi
