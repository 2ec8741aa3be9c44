#!/usr/bin/env bash
# Start to first correct answer at 100k pod records (the large dataset of bench/compare.sh), for roster
# binaries (`roster dns --objects`) and peers named as in compare.sh (knot, nsd, coredns: the zone
# files, configured as compare.sh does), in alternating rounds: wall seconds, the process's CPU seconds
# at that moment (user + system, steadier than wall on a shared host) and peak RSS. Prints one line per
# run and, per server, the run with the median CPU time.
#
#   bench/startup.sh [--rounds N] [--scale small|large] BIN|knot|nsd|coredns ...
#
# The dataset is generated once under $BENCH_WORKDIR/data (default /tmp/roster-bench), as compare.sh
# does. Loopback only; each server is stopped by PID; each wait is bounded (120 s).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rounds=3 scale=large bins=()
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    *) bins+=("$1"); shift ;;
  esac
done
((${#bins[@]})) || bins=("$HERE/../target/release/roster")
command -v dig >/dev/null || { echo "missing dig (dnsutils)" >&2; exit 2; }
work=${BENCH_WORKDIR:-/tmp/roster-bench}
data=$(cd "$HERE/lib" && python3 -c "
import sys, compare
print(compare.dataset(sys.argv[1], sys.argv[2])['dir'])" "$work" "$scale" | tail -1)
read -r qname address < <(python3 -c "
import json, sys
probe = json.load(open(sys.argv[1]))['ready_probe']
print(probe['qname'], probe['a'][0])" "$data/meta.json")

run() {  # BIN or peer name -> "wall cpu peak_kib"
  local port=$((20000 + RANDOM % 20000)) start pid argv=()
  if [[ $1 == */* ]]; then
    argv=("$1" dns --objects "$data/kube-objects.json" --listen "127.0.0.1:$port" --ttl 5)
  else  # the peer's port, then its command line, after writing its configuration
    mapfile -t argv < <(cd "$HERE/lib" && python3 -c "
import sys, compare, peers
peer = {p.name: p for p in peers.all_peers()}[sys.argv[1]]
ds = compare.dataset(sys.argv[2], sys.argv[3])
wd = sys.argv[2] + '/startup/' + peer.name
peer.prepare(wd, ds)
print(peer.port)
print('\n'.join(peer.argv(wd, ds)))" "$1" "$work" "$scale" | tail -n +1)
    port=${argv[0]}; argv=("${argv[@]:1}")
  fi
  start=$(date +%s.%N)
  ROSTER_LOG=warn "${argv[@]}" >/dev/null 2>&1 &
  pid=$!
  local deadline=$((SECONDS + 120)) line="timeout"
  while ((SECONDS < deadline)); do
    if dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 "$qname" A 2>/dev/null | grep -qx "$address"; then
      line="$(echo "$(date +%s.%N) - $start" | bc) $(awk '{print ($14 + $15) / 100}' "/proc/$pid/stat") \
$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
      break
    fi
    sleep 0.02
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$line"
}

declare -A results
for ((r = 1; r <= rounds; r++)); do
  for bin in "${bins[@]}"; do
    out=$(run "$bin")
    echo "round $r $bin: wall_s cpu_s peak_kib = $out"
    results[$bin]+="$out"$'\n'
  done
done
echo "median over $rounds rounds ($scale, $(git -C "$HERE" rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)):"
for bin in "${bins[@]}"; do
  printf '%s\n' "${results[$bin]}" | grep -v '^$' | sort -n -k2 | awk -v b="$bin" '
    { w[NR] = $1; c[NR] = $2; m[NR] = $3 } END { i = int((NR + 1) / 2); printf "  %s: wall %.2f s, cpu %.2f s, peak RSS %.0f MiB\n", b, w[i], c[i], m[i] / 1024 }'
done
