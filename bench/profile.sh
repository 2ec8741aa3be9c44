#!/usr/bin/env bash
# Profile roster's DNS server under a dnsperf load with perf (call graphs by DWARF).
#
#   bench/profile.sh [LOAD] [SECONDS]     LOAD: mixed (default) | podA svcA srv nx nodataAAAA ptr
#
# Uses the dataset bench/run.sh generated (default --scale small) in $BENCH_WORKDIR
# (/tmp/roster-bench), starts target/release/roster pinned to core 1, runs dnsperf pinned
# to core 0 for SECONDS+4 s, records the server for SECONDS s from the 3rd second, stops
# roster by its PID and prints where the time goes (lib/perf_buckets.py: kernel send/recv,
# hickory's encoder and per-query task, roster's lookup, ...) and the top symbols. The perf data is kept
# in $BENCH_WORKDIR/profile-LOAD.data for `perf report -i`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
LOAD="${1:-mixed}"
SECS="${2:-8}"
WORK="${BENCH_WORKDIR:-/tmp/roster-bench}"
DS="${DATASET:-$WORK/data/s1000-p10-c1000}"
BIN="${ROSTER_BIN:-$REPO/target/release/roster}"
PORT="${PORT:-15398}"
if [[ $LOAD == mixed ]]; then QF="$DS/queries.txt"; else QF="$DS/queries-$LOAD.txt"; fi
[[ -f $QF ]] || { echo "no $QF: run bench/run.sh --scale small first" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf not installed" >&2; exit 2; }
OUT="$WORK/profile-$LOAD.data"

ROSTER_LOG=warn taskset -c 1 "$BIN" dns --objects "$DS/kube-objects.json" \
  --listen "127.0.0.1:$PORT" --ttl 5 >"$WORK/profile-roster.log" 2>&1 &
RPID=$!
trap 'kill "$RPID" 2>/dev/null || true' EXIT
for _ in $(seq 200); do
  python3 - "$PORT" <<'PY' && break || sleep 0.05
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    s.send(bytes.fromhex("abcd01000001000000000000") + b"\x07cluster\x05local\x00\x00\x06\x00\x01")
    sys.exit(0 if s.recv(512)[3] & 0xF == 0 else 1)
except OSError:
    sys.exit(1)
PY
done
taskset -c 0 dnsperf -s 127.0.0.1 -p "$PORT" -d "$QF" -l $((SECS + 4)) -c 4 -T 1 -q 200 -e \
  >"$WORK/profile-dnsperf.txt" 2>&1 &
DPID=$!
sleep 3
perf record -F 499 --call-graph dwarf,32768 -p "$RPID" -o "$OUT" -- sleep "$SECS" 2>&1 | tail -1
wait "$DPID"
kill "$RPID"; wait "$RPID" 2>/dev/null || true
trap - EXIT
grep -E "Queries per second|Queries lost" "$WORK/profile-dnsperf.txt"
perf script -i "$OUT" -F ip,sym 2>/dev/null | python3 "$HERE/lib/perf_buckets.py" -
echo "== self (top 30)"
perf report -i "$OUT" --no-children --sort symbol --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9.]+%' | head -30
echo "== inclusive (children; top 60)"
perf report -i "$OUT" --children --sort symbol --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9.]+%' | head -60
