#!/usr/bin/env bash
# Benchmark: the same chat request sent straight to a fast mock provider and through portgate,
# at concurrency 1, 16 and 64, with wrk (closed loop, keep-alive). Prints requests/s, p50 and
# p99 for both, the added latency, and portgate's idle and peak RSS. Any non-2xx answer or wrk
# socket error (connect, read, write, timeout) fails the run with wrk's output.
#
# Everything runs on this machine (loopback only); on 2 cores the load generator, the mock and
# the gateway share the CPUs, so read the figures as relative, not absolute.
#
# Environment: DURATION (default 10s), CONNS (default "1 16 64"), THREADS (portgate threads,
# default 2), OUT (result file, default bench/results/latest.md), PORTGATE_BIN (binary to
# measure instead of the fresh build, for before/after runs), ACCESS_LOG (stdout, off or a path;
# unset: the default, stdout, captured to a temporary file).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-"1 16 64"}
THREADS=${THREADS:-2}
OUT=${OUT:-bench/results/latest.md}
source bench/common.sh
bench_prepare wrk
bench_start "$THREADS"
# One request each way so both sides are warm and the answer is right before measuring.
curl -sf -X POST "http://$MOCK/v1/chat/completions" -d '{}' >/dev/null
curl -sf -X POST "http://$GW/v1/chat/completions" -H 'x-portkey-provider: openai' \
  -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[]}' >/dev/null

rss_kb() { awk "/^$2:/ {print \$2}" "/proc/$1/status"; }
idle_rss=$(rss_kb "$gw_pid" VmRSS)

# Runs wrk and prints "rps p50_ms p99_ms". Fails the run on any non-2xx answer and on any
# socket error (wrk prints "Socket errors: connect N, read N, write N, timeout N" only when
# one occurred): a dropped keep-alive connection is a failed request, not noise.
measure() {
  local url=$1 conns=$2 gateway=$3 out sock
  out=$(WRK_GATEWAY=$gateway wrk -t1 -c"$conns" -d"$DURATION" --latency -s bench/post.lua "$url")
  if echo "$out" | grep -q "Non-2xx"; then
    echo "bench: non-2xx responses from $url" >&2
    echo "$out" >&2
    exit 1
  fi
  sock=$(echo "$out" | awk '/Socket errors:/ {gsub(",", ""); print "connect " $4 ", read " $6 ", write " $8 ", timeout " $10}')
  if [ -n "$sock" ]; then
    echo "bench: socket errors from $url at $conns connections: $sock" >&2
    echo "$out" >&2
    exit 1
  fi
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

mkdir -p "$(dirname "$OUT")"
{
  echo "# portgate benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); wrk -t1, $DURATION per run; portgate threads=$THREADS"
  echo
  echo "| conc | direct rps | direct p50 ms | direct p99 ms | portgate rps | portgate p50 ms | portgate p99 ms | rps ratio | added p50 ms |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} > "$OUT"
for c in $CONNS; do
  # Plain assignments, not `read < <(measure ...)`: a failing measure must stop the run, and
  # the exit status of a process substitution is lost.
  direct=$(measure "http://$MOCK/v1/chat/completions" "$c" 0)
  through=$(measure "http://$GW/v1/chat/completions" "$c" 1)
  read -r d_rps d_p50 d_p99 <<<"$direct"
  read -r g_rps g_p50 g_p99 <<<"$through"
  ratio=$(awk -v g="$g_rps" -v d="$d_rps" 'BEGIN {printf "%.0f%%", 100*g/d}')
  added=$(awk -v g="$g_p50" -v d="$d_p50" 'BEGIN {printf "%.3f", g-d}')
  echo "| $c | $d_rps | $d_p50 | $d_p99 | $g_rps | $g_p50 | $g_p99 | $ratio | $added |" >> "$OUT"
done
peak_rss=$(rss_kb "$gw_pid" VmHWM)
{
  echo
  echo "portgate RSS: idle $((idle_rss / 1024)) MiB, peak $((peak_rss / 1024)) MiB"
} >> "$OUT"
cat "$OUT"
