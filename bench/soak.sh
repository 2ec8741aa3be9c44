#!/usr/bin/env bash
# Memory soak of `roster local`: a StatefulSet scaled 0 -> 30 -> 0 over and over with kubectl while the
# process's resident memory is sampled every 10 s; see bench/README.md ("Memory soak").
#
#   bench/soak.sh [--build] [MINUTES]        (default 12 minutes; the verdict needs more than 7)
#
# --build runs `cargo build --release` first; ROSTER_BIN picks another binary (default
# target/release/roster). SOAK_WORKDIR (default /tmp/roster-soak) holds the log and the samples
# (rss.csv: seconds, VmRSS KiB, cycles done). Ports are 127.0.0.1 only (SOAK_PORT_BASE, default 17400:
# API, DNS and stream on the next three). Every wait is bounded; roster is stopped by its PID.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
MINUTES=12
for a in "$@"; do
  case "$a" in
    --build) (cd "$REPO" && cargo build --release) ;;
    [0-9]*) MINUTES="$a" ;;
    *) echo "usage: bench/soak.sh [--build] [MINUTES]" >&2; exit 2 ;;
  esac
done
BIN="${ROSTER_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/roster}"
[ -x "$BIN" ] || { echo "no roster binary at $BIN (use --build or ROSTER_BIN)" >&2; exit 2; }
command -v kubectl >/dev/null || { echo "missing kubectl" >&2; exit 2; }
command -v python3 >/dev/null || { echo "missing python3" >&2; exit 2; }
WORK="${SOAK_WORKDIR:-/tmp/roster-soak}"
rm -rf "$WORK" && mkdir -p "$WORK"
BASE="${SOAK_PORT_BASE:-17400}"
API="127.0.0.1:$((BASE + 1))"

ROSTER_LOG=warn "$BIN" local --api "$API" --dns "127.0.0.1:$((BASE + 2))" --stream "127.0.0.1:$((BASE + 3))" \
  --pod-ready-ms 200 >"$WORK/roster.out" 2>"$WORK/roster.err" &
PID=$!
SAMPLER=""
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for _ in $(seq 1 300); do
  KUBECONFIG="$(sed -n 's/^ *export KUBECONFIG=//p' "$WORK/roster.out")"
  [ -n "$KUBECONFIG" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/roster.err" >&2; exit 1; }
  sleep 0.1
done
[ -n "$KUBECONFIG" ] || { echo "roster local printed no kubeconfig within 30 s" >&2; exit 1; }
export KUBECONFIG
k() { timeout 120 kubectl --request-timeout=60s "$@"; }

k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: soak}
spec:
  clusterIP: None
  selector: {app: soak}
  ports: [{name: web, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: soak}
spec:
  serviceName: soak
  replicas: 0
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: soak}}
  template:
    metadata: {labels: {app: soak}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{name: web, image: registry.k8s.io/nginx-slim:0.8, ports: [{name: web, containerPort: 80}]}]
EOF

# the sampler: every 10 s, seconds since start, VmRSS in KiB, cycles completed
echo 0 >"$WORK/cycles"
(
  start=$(date +%s)
  while kill -0 "$PID" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
    echo "$(($(date +%s) - start)),$rss,$(cat "$WORK/cycles")" >>"$WORK/rss.csv"
    sleep 10
  done
) &
SAMPLER=$!

end=$(($(date +%s) + MINUTES * 60))
cycles=0
while [ "$(date +%s)" -lt "$end" ]; do
  k scale statefulset soak --replicas=30 >/dev/null
  k wait statefulset soak --for=jsonpath='{.status.readyReplicas}'=30 --timeout=110s >/dev/null
  k scale statefulset soak --replicas=0 >/dev/null
  k wait statefulset soak --for=jsonpath='{.status.replicas}'=0 --timeout=110s >/dev/null
  cycles=$((cycles + 1))
  echo "$cycles" >"$WORK/cycles.tmp" && mv "$WORK/cycles.tmp" "$WORK/cycles"   # the sampler reads it
done
kill -0 "$PID" 2>/dev/null || { echo "roster local exited during the soak" >&2; cat "$WORK/roster.err" >&2; exit 1; }

python3 - "$WORK/rss.csv" "$MINUTES" "$cycles" <<'EOF'
import sys
path, minutes, cycles = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = []
for line in open(path):
    fields = line.strip().split(",")
    if len(fields) == 3 and all(f.isdigit() for f in fields):
        rows.append(tuple(int(f) for f in fields))
mib = lambda kib: kib / 1024
print(f"roster local, {minutes} min, {cycles} cycles of 0 -> 30 -> 0 ({cycles * 30} pod lifecycles), {len(rows)} samples")
for m in range(0, minutes + 1):
    at = [r for r in rows if r[0] <= m * 60]
    if at:
        t, rss, c = at[-1]
        print(f"  {t:5d} s  {mib(rss):7.1f} MiB  after {c} cycles")
# flat means: after the warm-up, the largest sample is within 10 % of the smallest. The warm-up is
# at least 400 s: the identity controller's event recorder (kube-runtime) keeps what it published for
# 6 minutes, one entry per pod lifecycle here, so its cache fills for that long and then holds.
warm = max(400, minutes * 20)
late = [r[1] for r in rows if r[0] >= warm]
if late:
    lo, hi = min(late), max(late)
    spread = (hi - lo) / lo * 100
    print(f"after {warm} s: min {mib(lo):.1f} MiB, max {mib(hi):.1f} MiB, spread {spread:.1f} % "
          f"({'flat' if spread <= 10 else 'NOT flat'} within 10 %)")
EOF
