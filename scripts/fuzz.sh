#!/usr/bin/env bash
# Runs each libFuzzer target for a while on a copy of its seed corpus (what `make fuzz` does
# after building them), so that the checked-in corpus (fuzz/corpus/<target>/) is not touched.
#
#     scripts/fuzz.sh <fuzz build dir> <seconds per target> <target>...
#
# A crash, contract violation, leak, timeout (-timeout) or excessive allocation
# (-malloc_limit_mb, -rss_limit_mb) leaves the input in <build>/artifacts/<target>-* and makes
# the script exit 1 once every target has run. Prints executions/s and coverage per target;
# the full logs are <build>/logs/<target>.log.
set -uo pipefail
cd "$(dirname "$0")/.."

build=$1
seconds=$2
shift 2
status=0
mkdir -p "$build/artifacts" "$build/logs"
printf '%-18s %-7s %10s %8s %6s %6s %s\n' target result runs exec/s cov ft corpus
for target in "$@"; do
  case "$target" in
    frame) max_len=24576 ;;           # seeds carry a 17 KB side-socket message
    manager_protocol) max_len=8192 ;;
    handshake_*) max_len=512 ;;       # the handshake reads fixed-size messages
    *) max_len=4096 ;;
  esac
  work="$build/corpus/$target"
  rm -rf "$work"
  mkdir -p "$work"
  cp fuzz/corpus/"$target"/* "$work"/
  log="$build/logs/$target.log"
  result=ok
  if ! "$build/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=1024 -max_len="$max_len" -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" "$work" >"$log" 2>&1; then
    result=FAILED
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  printf '%-18s %-7s %10s %8s %6s %6s %s\n' "$target" "$result" "${runs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}"
  if [ "$result" != ok ]; then
    grep -E 'ERROR|VIOLATION|SUMMARY|Test unit written|Base64' "$log" | head -20 >&2
  fi
done
exit "$status"
