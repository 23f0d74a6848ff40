#!/usr/bin/env bash
# Usage: crash_test.sh MPIEXEC EXE — a worker rank dies with SIGKILL: the job must end within
# the timeout, with a non-zero status and Open MPI's message about the dead rank.
set -u
mpiexec=$1 exe=$2
out=$(timeout 60 "$mpiexec" --allow-run-as-root --oversubscribe -n 3 "$exe" 2>&1)
rc=$?
echo "$out"
echo "mpiexec exit status: $rc"
if [ "$rc" -eq 124 ]; then echo "FAIL: the job hung"; exit 1; fi
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0"; exit 1; fi
if echo "$out" | grep -q "UNEXPECTED"; then echo "FAIL: rank 0 went on"; exit 1; fi
if ! echo "$out" | grep -qiE "signal 9|Killed"; then echo "FAIL: no message about the dead rank"; exit 1; fi
echo "PASS: the job aborted with a clear message"
