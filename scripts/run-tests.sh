#!/usr/bin/env bash
# Runs every test (unit and integration; the integration tests start their own mock providers
# and gateways) and ends with one summary line over all test binaries.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --lib --bins --tests "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .*; ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
