#!/usr/bin/env bash
# Runs every test and ends with one summary line over all test binaries: the unit tests, the
# integration tests (`tests/it`), the tests that measure the whole process (`tests/process`,
# one at a time so that no other test's allocations land in their measurements) and the
# global-logger test (`tests/logging.rs`, alone in its process).
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
run() {
  cargo test "$@" 2>&1 | tee -a "$log"
  local s=${PIPESTATUS[0]}
  [ "$s" -ne 0 ] && status=$s
}
run --lib --bins --test it --test logging
run --test process -- --test-threads=1
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .*; ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
