#!/usr/bin/env bash
# Guardrail cost: the same chat request through portgate to the fast mock, once with a config
# without hooks and once with five built-in checks on the input and five on the output (the
# issue's target: at most 1.3x the CPU per request). Reports requests/s and the gateway's CPU
# microseconds per request for both, and their ratio.
#
# On a 2-core machine portgate is pinned to CPU 1 and wrk and the mock to CPU 0 (taskset), so
# the figures measure the gateway. CPU time is read from /proc/<pid>/stat. A shared VM swings
# ±15% between identical runs and drifts over minutes, so the two configs alternate in many
# short rounds (neighbouring rounds see the same machine) and the figures reported are the
# medians, with the median and quartiles of the rounds' own ratios.
# Environment: DURATION (default 2s), ROUNDS (default 21), CONNS (default 16), PORTGATE_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-2s}
ROUNDS=${ROUNDS:-21}
CONNS=${CONNS:-16}
ACCESS_LOG=${ACCESS_LOG:-off}
EXTRA_YAML=$(cat bench/guardrails.yaml)
source bench/common.sh
bench_prepare wrk
bench_start 1 taskset -c 1
taskset -pc 0 "$mock_pid" >/dev/null

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$gw_pid/stat"; }

# Runs wrk with one named config and prints "rps cpu_us_per_request".
measure() {
  local config=$1 before after out reqs
  before=$(cpu_ticks)
  out=$(WRK_CONFIG=$config taskset -c 0 wrk -t1 -c"$CONNS" -d"$DURATION" \
    -s bench/post.lua "http://$GW/v1/chat/completions")
  after=$(cpu_ticks)
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
    echo "bench: errors with config $config:" >&2
    echo "$out" >&2
    exit 1
  fi
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(awk -v d=$((after - before)) -v t="$ticks" -v n="$reqs" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')"
}

for c in plain guarded; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$GW/v1/chat/completions" \
    -H "x-portkey-config: $c" -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' \
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}')
  [ "$status" = 200 ] || { echo "bench: config $c answered $status" >&2; exit 1; }
done
p_all=() g_all=() p_rates=() g_rates=() ratios=()
for round in $(seq "$ROUNDS"); do
  read -r p_rps p_cpu <<<"$(measure plain)"
  read -r g_rps g_cpu <<<"$(measure guarded)"
  p_all+=("$p_cpu") g_all+=("$g_cpu") p_rates+=("$p_rps") g_rates+=("$g_rps")
  ratios+=("$(awk -v g="$g_cpu" -v p="$p_cpu" 'BEGIN {printf "%.3f", g / p}')")
  awk -v r="$round" -v g="$g_cpu" -v p="$p_cpu" \
    'BEGIN {printf "round %d: %.1f vs %.1f µs per request, %.2fx\n", r, p, g, g / p}' >&2
done
p_cpu=$(printf '%s\n' "${p_all[@]}" | median)
g_cpu=$(printf '%s\n' "${g_all[@]}" | median)
echo "| config | requests/s (median) | CPU µs per request (median of $ROUNDS) |"
echo "|---|---:|---:|"
echo "| no hooks | $(printf '%s\n' "${p_rates[@]}" | median) | $p_cpu |"
echo "| 5 input + 5 output checks | $(printf '%s\n' "${g_rates[@]}" | median) | $g_cpu |"
awk -v g="$g_cpu" -v p="$p_cpu" 'BEGIN {printf "guarded / plain CPU (medians): %.2fx\n", g / p}'
printf '%s\n' "${ratios[@]}" | median_quartiles |
  awk '{printf "rounds'"'"' own ratios: median %.2fx, quartiles %.2fx to %.2fx\n", $1, $2, $3}'
