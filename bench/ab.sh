#!/usr/bin/env bash
# A/B of two portgate builds: the same request through build A and build B, in alternating
# short rounds (A then B, then B then A), each build pinned to CPU 1 with wrk and the mock on
# CPU 0. Reports each build's median requests/s and CPU µs per request, and the median and
# quartiles of the rounds' own B/A CPU ratios. Neighbouring rounds see the same machine, so
# this shows a change of a few percent that two separate `make bench` runs cannot (this VM
# drifts by 20-30% over an hour).
#
# Usage: bench/ab.sh A_BINARY B_BINARY
# Environment: DURATION (default 2s), ROUNDS (default 21), CONNS (default 16), STREAM (1 for
# the 8-event stream), MODEL (bench-200 for the 200-event stream), ACCESS_LOG, EXTRA_YAML (both
# builds' settings), EXTRA_YAML_A / EXTRA_YAML_B (one build's: the same binary twice compares
# two settings), WRK_VIRTUAL_KEY (sent as x-portkey-virtual-key).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bench/ab.sh A_BINARY B_BINARY" >&2; exit 2; }
a_bin=$(realpath "$1")
b_bin=$(realpath "$2")
DURATION=${DURATION:-2s}
ROUNDS=${ROUNDS:-21}
CONNS=${CONNS:-16}
STREAM=${STREAM:-0}
MODEL=${MODEL:-gpt-4o-mini}
source bench/common.sh
bench_prepare wrk
taskset -c 0 "$RELEASE_DIR/examples/bench_mock" "$MOCK" &
mock_pid=$!
GW_A=$GW
EXTRA_YAML="${EXTRA_YAML:-}${EXTRA_YAML_A:+
$EXTRA_YAML_A}" PORTGATE_BIN=$a_bin bench_start 1 taskset -c 1
a_pid=$gw_pid
GW=127.0.0.1:18797 ADMIN=127.0.0.1:18798
EXTRA_YAML="${EXTRA_YAML:-}${EXTRA_YAML_B:+
$EXTRA_YAML_B}" PORTGATE_BIN=$b_bin bench_start 1 taskset -c 1
b_pid=$gw_pid
trap 'kill -INT "$a_pid" 2>/dev/null; bench_cleanup' EXIT

# One round of one build: "rps cpu p50".
one() {
  read -r rps p50 _ cpu <<<"$(measure "$1" "$2" "$STREAM" 1 "$MODEL" "$CONNS")"
  echo "$rps $cpu $p50"
}
: > "$tmp/a" && : > "$tmp/b" && : > "$tmp/ratios"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then
    a=$(one "$GW_A" "$a_pid") b=$(one "$GW" "$b_pid")
  else
    b=$(one "$GW" "$b_pid") a=$(one "$GW_A" "$a_pid")
  fi
  echo "$a" >> "$tmp/a" && echo "$b" >> "$tmp/b"
  awk -v a="$(echo "$a" | awk '{print $2}')" -v b="$(echo "$b" | awk '{print $2}')" -v r="$round" \
    'BEGIN {printf "%.3f\n", b / a; printf "round %d: A %.1f, B %.1f µs per request, B/A %.2fx\n", r, a, b, b / a > "/dev/stderr"}' >> "$tmp/ratios"
done
echo "| build | requests/s (median) | CPU µs per request (median of $ROUNDS) | p50 ms (median) |"
echo "|---|---:|---:|---:|"
echo "| A $1 | $(awk '{print $1}' "$tmp/a" | median) | $(awk '{print $2}' "$tmp/a" | median) | $(awk '{print $3}' "$tmp/a" | median) |"
echo "| B $2 | $(awk '{print $1}' "$tmp/b" | median) | $(awk '{print $2}' "$tmp/b" | median) | $(awk '{print $3}' "$tmp/b" | median) |"
median_quartiles < "$tmp/ratios" | awk '{printf "B/A CPU per request, rounds'"'"' own ratios: median %.3fx, quartiles %.3fx to %.3fx\n", $1, $2, $3}'
