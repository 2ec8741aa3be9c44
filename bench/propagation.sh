#!/usr/bin/env bash
# Propagation latency of roster (API write acknowledged -> every DNS replica answers), with one and
# with three DNS replicas; see bench/README.md ("Propagation latency").
#
#   bench/propagation.sh [--build] [--changes N] [--replicas 1,3] [--background N] [...]
#
# --build  runs `cargo build --release` first. Other flags go to bench/propagation.py (--help).
# Only 127.0.0.1; every wait is bounded; the processes it starts are stopped by PID.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
args=()
for a in "$@"; do
  case "$a" in
    --build) (cd "$REPO" && cargo build --release) ;;
    *) args+=("$a") ;;
  esac
done
command -v python3 >/dev/null || { echo "missing python3" >&2; exit 2; }
exec python3 "$HERE/propagation.py" "${args[@]+"${args[@]}"}"
