#!/bin/bash
# Whole-process user-space instructions from start to the first correct answer (bench/README.md,
# "Start-up"): the server runs under callgrind; once it answers the dataset's last pod name the counts
# are dumped (every thread, summed) and the server is stopped by PID. Instruction counts do not move
# with the host's load, unlike wall or CPU time.
#   bench/startup_instructions.sh DATASET_DIR PORT OUT SERVER_COMMAND...
# e.g. bench/startup_instructions.sh /tmp/roster-bench/data/s10000-p10-c10000 15421 /tmp/cg.roster \
#        target/release/roster dns --objects DATASET_DIR/kube-objects.json --listen 127.0.0.1:15421 --ttl 5
set -u
D=$1; PORT=$2; OUT=$3; shift 3
read -r QNAME ADDRESS < <(python3 -c "
import json, sys
probe = json.load(open(sys.argv[1]))['ready_probe']
print(probe['qname'], probe['a'][0])" "$D/meta.json")
rm -f "$OUT" "$OUT".*
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$@" > "$OUT.log" 2>&1 &
VG=$!
answered=
for i in $(seq 1 3000); do  # bounded: 3000 × (≤ 1 s query + 0.1 s)
  if dig +short +time=1 +tries=1 -p "$PORT" @127.0.0.1 "$QNAME" A 2>/dev/null | grep -qx "$ADDRESS"; then
    answered=1; break
  fi
  kill -0 $VG 2>/dev/null || break
  sleep 0.1
done
[ -n "$answered" ] && callgrind_control -d $VG >/dev/null 2>&1
kill $VG 2>/dev/null; wait $VG 2>/dev/null
[ -n "$answered" ] || { echo "$OUT: no answer (see $OUT.log)" >&2; exit 1; }
TOTAL=$(callgrind_annotate "$OUT".1 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "$OUT: $TOTAL instructions to the first answer"
