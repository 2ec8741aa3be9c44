#!/usr/bin/env bash
# Runs roster's fuzz targets (fuzz/, cargo-fuzz + libFuzzer) one after another, each for SECONDS
# (default 600), one job each. Usage: bench/fuzz.sh [SECONDS] [TARGET...]; targets default to all:
# request store frames manifests packed. Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags.
# Each run fuzzes a temporary copy of the committed seeds (fuzz/corpus/<target>), so what fuzzing
# finds stays out of git; a crash lands in fuzz/artifacts/<target>/ (ignored) and fails the script.
# Logs: $FUZZ_LOG_DIR (default a temporary directory), one <target>.log each; the summary prints
# libFuzzer's final stats (stat::number_of_executed_units) and coverage (cov:, ft:) per target.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-600}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(request store frames manifests packed)

export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
logs="${FUZZ_LOG_DIR:-$(mktemp -d)}"
mkdir -p "$logs"

# -a: debug assertions and overflow checks, so that arithmetic that would wrap is a finding too.
# FUZZ_BUILD_FLAGS replaces it (scripts/test.sh: `--dev -s none`, a debug build without sanitizer,
# which compiles in a fraction of the time).
read -r -a build_flags <<<"${FUZZ_BUILD_FLAGS:--a}"
start=$SECONDS
(cd fuzz && cargo fuzz build "${build_flags[@]}")
echo "fuzz targets built in $((SECONDS - start)) s"

failed=()
for target in "${targets[@]}"; do
  corpus="$(mktemp -d)"
  cp fuzz/corpus/"$target"/* "$corpus"/
  dict=()
  [[ -f fuzz/dicts/$target.dict ]] && dict=(-dict="dicts/$target.dict")
  # store and frames build a FrontHandler per input, which leaks its zone labels by design
  # (metrics::static_label: once per process in the server); LeakSanitizer would stop at once.
  leaks=""
  [[ $target == store || $target == frames ]] && leaks=detect_leaks=0
  echo "fuzzing $target for $seconds s (log: $logs/$target.log)"
  if (cd fuzz && ASAN_OPTIONS="${ASAN_OPTIONS:-}${leaks:+:$leaks}" cargo fuzz run "${build_flags[@]}" "$target" "$corpus" -- -max_total_time="$seconds" -timeout=10 \
    -print_final_stats=1 "${dict[@]}") >"$logs/$target.log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
  fi
  stats="$(grep -E '^stat::number_of_executed_units' "$logs/$target.log" | awk '{print $2}' || true)"
  last="$(grep -E '^#[0-9]+' "$logs/$target.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)"
  echo "$target: $status, ${stats:-?} executions, $last"
  rm -rf "$corpus"
done
if ((${#failed[@]})); then
  echo "fuzzing found crashes in: ${failed[*]} (see fuzz/artifacts/ and the logs in $logs)" >&2
  exit 1
fi
