#!/usr/bin/env bash
# roster beside Knot, NSD and CoreDNS (its `file` plugin on the same zone files) on one core:
# qps, server CPU per query, instructions per query under callgrind, p99 at a fixed rate, RSS and
# RSS per record, start to first correct answer; small (10k pod records) and large (100k) datasets;
# mixed and NXDOMAIN-only loads; every figure also as a ratio to roster's (bench/README.md).
#
#   bench/compare.sh [--quick] [--build] [--scales small,large] [--only roster,knot,...] [...]
#
# --quick   3 s loads, instructions on the small dataset only: under 10 minutes.
# --build   cargo build --release first.
# Installs what is missing (dnsperf, knot, nsd, valgrind) with apt-get. CoreDNS is the v1.15.0
# binary scripts/cluster.sh builds (COREDNS_BIN overrides). Loopback only, every load bounded,
# servers stopped by PID. Writes bench/results/compare-latest.txt (committed) and
# bench/results/compare-DATE.json (every figure, ignored by git).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

args=()
build=0
for a in "$@"; do
  case "$a" in
    --build) build=1 ;;
    *) args+=("$a") ;;
  esac
done

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v knotd >/dev/null || [[ -x /usr/sbin/knotd ]] || need+=(knot)
command -v nsd >/dev/null || [[ -x /usr/sbin/nsd ]] || need+=(nsd)
command -v valgrind >/dev/null || need+=(valgrind)
command -v taskset >/dev/null || need+=(util-linux)
command -v dig >/dev/null || need+=(bind9-dnsutils)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Where no init system runs, policy-rc.d stops the packages' daemons from starting: harmless.
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

if [[ -z ${COREDNS_BIN:-} ]]; then
  COREDNS_BIN="$("$REPO/scripts/cluster.sh" bin)/coredns"
  export COREDNS_BIN
fi
if [[ $build == 1 ]]; then
  (cd "$REPO" && cargo build --release)
fi
[[ -x "${ROSTER_BIN:-$REPO/target/release/roster}" ]] || {
  echo "no ${ROSTER_BIN:-$REPO/target/release/roster}: cargo build --release (or --build)" >&2
  exit 2
}
exec python3 "$HERE/lib/compare.py" "${args[@]+"${args[@]}"}"
