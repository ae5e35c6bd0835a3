#!/usr/bin/env bash
# Translation cost: the same chat request through portgate to the fast mock, once untranslated
# (`openai`) and once translated to Anthropic's Messages API and back (`anthropic`; the mock
# answers `/messages` in Anthropic's format), in one run. Reports requests/s and the gateway's
# CPU microseconds per request for both, and their ratio (the providers issue's target: a
# translated request costs at most 1.5x an untranslated one).
#
# On a 2-core machine portgate is pinned to CPU 1 and wrk and the mock to CPU 0 (taskset), so
# the figures measure the gateway, not the scheduler. CPU time is read from /proc/<pid>/stat.
# Environment: DURATION (default 10s), CONNS (default 16), PORTGATE_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
ACCESS_LOG=${ACCESS_LOG:-off}
EXTRA_YAML="anthropic: {base_url: http://127.0.0.1:18080/v1}"
source bench/common.sh
bench_prepare wrk
bench_start 1 taskset -c 1
taskset -pc 0 "$mock_pid" >/dev/null

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$gw_pid/stat"; }

# Runs wrk for one provider and prints "rps cpu_us_per_request".
measure() {
  local provider=$1 before after out reqs
  before=$(cpu_ticks)
  out=$(WRK_GATEWAY=1 WRK_PROVIDER=$provider taskset -c 0 wrk -t1 -c"$CONNS" -d"$DURATION" \
    -s bench/post.lua "http://$GW/v1/chat/completions")
  after=$(cpu_ticks)
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
    echo "bench: errors through $provider:" >&2
    echo "$out" >&2
    exit 1
  fi
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(awk -v d=$((after - before)) -v t="$ticks" -v n="$reqs" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')"
}

for p in openai anthropic; do
  curl -sf -X POST "http://$GW/v1/chat/completions" -H "x-portkey-provider: $p" \
    -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' \
    -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}' >/dev/null
done
read -r o_rps o_cpu <<<"$(measure openai)"
read -r a_rps a_cpu <<<"$(measure anthropic)"
echo "| provider | requests/s | CPU µs per request |"
echo "|---|---:|---:|"
echo "| openai (untranslated) | $o_rps | $o_cpu |"
echo "| anthropic (translated) | $a_rps | $a_cpu |"
awk -v a="$a_cpu" -v o="$o_cpu" 'BEGIN {printf "translated / untranslated CPU: %.2fx\n", a / o}'
