#!/usr/bin/env bash
# CPU instructions per proxied request, counted by valgrind's callgrind: a deterministic figure
# for before/after comparisons on a machine too noisy for requests/s to show a 10% change (a
# shared 2-core VM swings ±15% between identical runs).
#
# portgate runs under callgrind with one worker thread against the bench mock; after a warm-up
# the counters are zeroed, wrk sends chat requests through the gateway for DURATION, and the
# user-space instructions executed are divided by the requests served. Kernel time (sockets,
# wake-ups) is not counted: compare this figure between builds, and read bench/run.sh for speed.
#
# Environment: TARGET (portgate, or floor: the bare Pingora passthrough of bench/run.sh, for
# the framework's own cost on the same load), WRK_STREAM=1 and WRK_MODEL (bench-200: a
# 200-event stream) as in bench/post.lua, PORTGATE_BIN (binary to measure, default the fresh
# release build), DURATION
# (default 15s), ACCESS_LOG (stdout, off or a path;
# unset: the default, stdout), OUT (callgrind file, default
# bench/results/callgrind.out; open it with callgrind_annotate for a per-function breakdown).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
OUT=${OUT:-bench/results/callgrind.out}
source bench/common.sh
bench_prepare wrk valgrind
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT" "$OUT".*
# Under callgrind start-up is slow; bench_start waits for /readyz.
TARGET=${TARGET:-portgate}
if [ "$TARGET" = floor ]; then
  cargo build --release --example bench_pingora_floor 2>&1 | tail -1
  "$RELEASE_DIR/examples/bench_mock" "$MOCK" &
  mock_pid=$!
  valgrind --tool=callgrind --callgrind-out-file="$OUT" \
    "$RELEASE_DIR/examples/bench_pingora_floor" "$GW" "$MOCK" >"$tmp/floor.log" 2>&1 &
  gw_pid=$!
  for _ in $(seq 600); do
    curl -s -o /dev/null -X POST "http://$GW/v1/chat/completions" -d '{}' && break
    sleep 0.1
  done
  gateway=0
else
  bench_start 1 valgrind --tool=callgrind --callgrind-out-file="$OUT"
  gateway=1
fi

load() {
  WRK_GATEWAY=$gateway wrk -t1 -c8 -d"$1" -s bench/post.lua "http://$GW/v1/chat/completions"
}
load 3s >/dev/null
callgrind_control -z "$gw_pid" >/dev/null 2>&1
requests=$(load "$DURATION" | awk '/requests in/ {print $1}')
callgrind_control -d "$gw_pid" >/dev/null 2>&1
sleep 1
dump=$(ls -t "$OUT".* | head -1)
instructions=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
echo "requests: $requests"
echo "instructions: $instructions"
echo "instructions per request: $((instructions / requests))"
echo "per-function breakdown: callgrind_annotate --inclusive=yes $dump"
