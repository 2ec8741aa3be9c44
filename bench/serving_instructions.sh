#!/bin/bash
# Whole-process user-space instructions per query while serving, start-up excluded (bench/README.md,
# issue 14): the server runs under callgrind pinned to core 1; once it answers the dataset's last pod
# name the counts are zeroed, dnsperf sends QUERIES at 2,000 qps from core 0, the counts are dumped
# and the program total is divided by the queries.
#   bench/serving_instructions.sh DATASET_DIR QUERIES PORT OUT SERVER_COMMAND...
# e.g. bench/serving_instructions.sh /tmp/roster-bench/data/s1000-p10-c1000 q.txt 15421 /tmp/cg.roster \
#        target/release/roster dns --objects DATASET_DIR/kube-objects.json --listen 127.0.0.1:15421 --ttl 5
set -u
D=$1; Q=$2; PORT=$3; OUT=$4; shift 4
N=$(tail -1 $D/queries-podA.txt | awk '{print $1}')
taskset -c 1 valgrind --tool=callgrind --callgrind-out-file=$OUT "$@" > $OUT.log 2>&1 &
VG=$!
for i in $(seq 1 400); do  # valgrind start-up of the large dataset: ~70 s
  a=$(dig +short +time=1 +tries=1 -p $PORT @127.0.0.1 $N A 2>/dev/null | grep -E '^[0-9.]+$')
  [ -n "$a" ] && break; sleep 1
done
callgrind_control -z $VG >/dev/null
COUNT=$(wc -l < $Q)
timeout 60 taskset -c 0 dnsperf -s 127.0.0.1 -p $PORT -d $Q -n 1 -Q 2000 -c 1 2>&1 | grep -E "Queries completed" >&2
callgrind_control -d $VG >/dev/null
sleep 1
kill $VG; wait $VG 2>/dev/null
TOTAL=$(callgrind_annotate $OUT.1 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "$OUT: up after ${i}s; $COUNT queries; $((TOTAL / COUNT)) instructions per query"
