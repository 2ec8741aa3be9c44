#!/usr/bin/env bash
# Caching-forwarder benchmark: roster's forwarder + cache against Unbound and dnsdist,
# all forwarding to one Knot on loopback (see bench/README.md, "Forwarder benchmark").
#
#   bench/forward.sh [--install] [--build] [--n 50000] [--rounds N] [--duration S]
#                    [--rate QPS] [--only roster,unbound,dnsdist] [--profile S] [...]
#
# --install  apt-get update; apt-get install dnsperf knot unbound dnsdist util-linux
#            (the distro's init scripts may try to start unbound/dnsdist; where no init
#            system runs, policy-rc.d denies it, which is harmless).
# --build    cargo build --release in the repository first (roster's binary).
# All other flags go to lib/forward_bench.py (bench/forward.sh --help).
# Traffic goes to 127.0.0.1 only; every load is time-bounded; every process is
# started by the script and stopped by its PID.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

install=0
build=0
args=()
for a in "$@"; do
  case "$a" in
    --install) install=1 ;;
    --build) build=1 ;;
    *) args+=("$a") ;;
  esac
done

if [[ $install == 1 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq dnsperf knot unbound dnsdist util-linux >/dev/null
fi

if [[ $build == 1 ]]; then
  (cd "$REPO" && cargo build --release)
fi

for tool in python3 dnsperf taskset knotd; do
  command -v "$tool" >/dev/null || { echo "missing $tool (try: bench/forward.sh --install)" >&2; exit 2; }
done

exec python3 "$HERE/lib/forward_bench.py" "${args[@]+"${args[@]}"}"
