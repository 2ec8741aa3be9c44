#!/bin/bash
# Whole-process user-space instructions per cached answer, for roster's forwarder, Unbound and dnsdist
# (bench/README.md, "Forwarder benchmark"): the stable form of "queries per CPU-second" on a loaded
# host, where times move and instruction counts do not. Each server runs under callgrind pinned to
# core 1, forwarding to one Knot (core 0) on the data of a forward.sh run; HIT names and NX NXDOMAIN
# names are cached first, then the counts are zeroed, dnsperf sends REPEAT passes over the cached
# names at 2,000 qps, the counts are dumped and divided by the queries answered; the same for NXDOMAIN.
#   bench/forward_instructions.sh [roster] [unbound] [dnsdist]      (default: all three)
# Env: ROSTER_BIN (default target/release/roster), HIT (2000), NX (500), REPEAT (3),
#      DATA (/tmp/roster-bench/forward/data/n50000, made by bench/forward.sh), WORK (/tmp/roster-bench/forward-instr).
# Only 127.0.0.1 (ports 15471-15472); every dnsperf run is time-bounded; processes are stopped by PID.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROSTER_BIN=${ROSTER_BIN:-$HERE/../target/release/roster}
HIT=${HIT:-2000}; NX=${NX:-500}; REPEAT=${REPEAT:-3}
DATA=${DATA:-/tmp/roster-bench/forward/data/n50000}
WORK=${WORK:-/tmp/roster-bench/forward-instr}
KNOT_PORT=15471; PORT=15472
SERVERS=("$@"); [ ${#SERVERS[@]} -eq 0 ] && SERVERS=(roster unbound dnsdist)
[ -f "$DATA/fwd.test.zone" ] || { echo "no data in $DATA: run bench/forward.sh once first" >&2; exit 1; }
for tool in valgrind callgrind_control callgrind_annotate dnsperf dig knotd taskset; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
rm -rf "$WORK"; mkdir -p "$WORK/knot"
head -n "$HIT" "$DATA/warm-hit.txt" > "$WORK/hit.txt"
head -n "$NX" "$DATA/warm-nx.txt" > "$WORK/nx.txt"

cat > "$WORK/knot/knot.conf" <<EOF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "$WORK/knot/knot.sock"
database:
    storage: "$WORK/knot/db"
template:
  - id: default
    storage: "$DATA"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
  - domain: fwd.test.
    file: fwd.test.zone
EOF
taskset -c 0 knotd -c "$WORK/knot/knot.conf" > "$WORK/knot/log" 2>&1 &
KNOT=$!
trap 'kill $KNOT 2>/dev/null; [ -n "${VG:-}" ] && kill $VG 2>/dev/null' EXIT

answers() {  # $1 port, $2 name: the A record's address, if any
  dig +short +time=1 +tries=1 -p "$1" @127.0.0.1 "$2" A 2>/dev/null | grep -E '^[0-9.]+$'
}
for _ in $(seq 1 50); do answers $KNOT_PORT pre0.fwd.test >/dev/null && break; sleep 0.2; done

server_argv() {
  case $1 in
    roster) echo "$ROSTER_BIN dns --objects $DATA/empty-list.json --listen 127.0.0.1:$PORT --upstream 127.0.0.1:$KNOT_PORT" ;;
    unbound)
      cat > "$WORK/unbound.conf" <<EOF
server:
    interface: 127.0.0.1@$PORT
    port: $PORT
    do-ip6: no
    num-threads: 1
    username: ""
    chroot: ""
    directory: "$WORK"
    pidfile: "$WORK/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-daemonize: no
    module-config: "iterator"
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    msg-cache-slabs: 1
    rrset-cache-slabs: 1
    infra-cache-slabs: 1
    key-cache-slabs: 1
    prefetch: no
    local-zone: "test." nodefault
    qname-minimisation: no
    trust-anchor-signaling: no
    root-key-sentinel: no
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$KNOT_PORT
EOF
      echo "unbound -d -c $WORK/unbound.conf" ;;
    dnsdist)
      cat > "$WORK/dnsdist.conf" <<EOF
setSecurityPollSuffix("")
setLocal("127.0.0.1:$PORT")
setACL({"127.0.0.0/8"})
newServer({address="127.0.0.1:$KNOT_PORT", checkName="fwd.test.", checkType="SOA", mustResolve=true})
pc = newPacketCache(100000, {maxTTL=86400, minTTL=0, numberOfShards=1})
getPool(""):setCache(pc)
EOF
      echo "dnsdist --supervised --disable-syslog -C $WORK/dnsdist.conf" ;;
  esac
}

perf_pass() {  # $1 query file, $2 passes, $3 qps: prints the queries completed
  timeout 120 taskset -c 0 dnsperf -s 127.0.0.1 -p $PORT -d "$1" -n "$2" -Q "$3" -c 1 -t 5 2>&1 |
    awk '/Queries completed/ {print $3}'
}

measure() {  # $1 label, $2 query file: instructions per completed query since the last zeroing
  local done total
  callgrind_control -z $VG >/dev/null 2>&1
  done=$(perf_pass "$2" "$REPEAT" 2000)
  callgrind_control -d $VG >/dev/null 2>&1
  sleep 1
  local dump; dump=$(ls -t "$OUT".* 2>/dev/null | grep -v '\.log$' | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
  if [ -z "$done" ] || [ "$done" -eq 0 ] || [ -z "$total" ]; then echo "$name $1: no measurement"; return; fi
  echo "$name $1: $done queries, $((total / done)) instructions per query"
}

for name in "${SERVERS[@]}"; do
  OUT="$WORK/cg.$name"
  # shellcheck disable=SC2046
  ROSTER_LOG=warn taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$OUT" $(server_argv $name) > "$OUT.log" 2>&1 &
  VG=$!
  for _ in $(seq 1 120); do answers $PORT pre0.fwd.test >/dev/null && break; sleep 1; done
  # Cache every name (twice: the second pass finds them all cached).
  for f in hit nx; do perf_pass "$WORK/$f.txt" 2 500 >/dev/null; done
  measure hit "$WORK/hit.txt"
  measure nxdomain "$WORK/nx.txt"
  kill $VG; wait $VG 2>/dev/null; VG=
done
