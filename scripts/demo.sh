#!/usr/bin/env bash
# scripts/demo.sh BUILD_DIR — the tour behind `make demo`.
#
# Runs every example of BUILD_DIR/examples in learning order, each under a one-line heading,
# then a quick benchmark table (bench/run --quick) when the benchmark driver is present.
# Examples not in the list below (added later) run at the end, so none is skipped.
# Exit status: non-zero if any example is missing or fails; the benchmark is informational
# (capped at 100 s so the whole tour stays under two minutes).
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "$1" 2>/dev/null && pwd) || { echo "demo: no build directory '$1'" >&2; exit 2; }
bin="$build/examples"

# name|heading, in the order a newcomer learns the API.
tour=(
  "process_basic|Start a process"
  "process_args|Pass arguments (and start with spawn)"
  "process_many|Start many processes in a loop, join them all"
  "process_names|CPU count, pids and process names"
  "process_sleep_timing|Sequential vs parallel, timed"
  "process_bubble_sort|A child works on its own copy"
  "process_exitcode|How did the child end? exit codes"
  "pipe_send_recv|A two-way conversation over a Pipe"
  "readme_hello|The README's first program"
  "sqrt_serial_vs_processes|When do processes pay off?"
  "map_reduce_factorial|One call maps a function over a million inputs (mproc::map, map_reduce)"
  "value_array|Share a number and an array (Value, Array)"
  "shared_counter|A counter many processes increment under its lock"
  "lock_printing|Take turns with a Lock"
  "queue_write_read|A writer and a reader connected by a Queue"
  "queue_workers|Workers fed by one Queue, results on another"
  "pool_map|A Pool maps a function over a list"
  "pool_apply_async|Single tasks on a Pool: apply_async and Futures"
  "pool_starmap|Several arguments per task: starmap over tuples"
  "queue_pool_status|Pool workers fed by a Queue: the queues as initializer arguments"
  "executor_submit|ProcessPoolExecutor: submit, then wait for the result"
  "executor_as_completed|Results as they finish: as_completed"
  "sqrt_pool_timing|When does a Pool pay off? serial vs Pool.map"
  "image_blur|Blur a folder of photos: executor.map over file names, then mproc::map"
  "manager_dict|Children write results into a Manager dict"
  "manager_remote|A manager over TCP: serve, connect, authkey"
)

# Append examples that exist in the source tree but are not in the tour yet.
declare -A listed=()
for entry in "${tour[@]}"; do listed[${entry%%|*}]=1; done
for source in "$repo"/examples/*.cpp; do
  name=$(basename "$source" .cpp)
  [[ -n ${listed[$name]:-} ]] || tour+=("$name|More: $name")
done

failed=()
step=0
tour_start=$SECONDS
for entry in "${tour[@]}"; do
  name=${entry%%|*}
  heading=${entry#*|}
  step=$((step + 1))
  echo
  echo "== $step. $heading (examples/$name.cpp)"
  if [[ ! -x "$bin/$name" ]]; then
    echo "demo: $bin/$name is not built" >&2
    failed+=("$name (not built)")
    continue
  fi
  # A deadline per example: a hang fails the tour instead of stalling it.
  timeout --kill-after=5 60 "$bin/$name"
  status=$?
  if [[ $status -ne 0 ]]; then
    [[ $status -eq 124 ]] && echo "demo: $name did not finish within 60 s" >&2
    echo "demo: $name exited with status $status" >&2
    failed+=("$name (status $status)")
  fi
done
echo
echo "== examples: $((${#tour[@]} - ${#failed[@]})) of ${#tour[@]} passed in $((SECONDS - tour_start)) s"

if [[ -x "$repo/bench/run" ]]; then
  echo
  echo "== $((step + 1)). Benchmarks (bench/run --quick)"
  if ! timeout --kill-after=5 100 "$repo/bench/run" --quick --build "$build"; then
    echo "demo: note: the benchmark run failed; the examples above are unaffected"
  fi
fi

if [[ ${#failed[@]} -ne 0 ]]; then
  echo
  echo "demo: FAILED: ${failed[*]}" >&2
  exit 1
fi
