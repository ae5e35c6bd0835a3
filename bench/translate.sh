#!/usr/bin/env bash
# Translation cost, in one run, against the fast mock: the same chat request untranslated
# (`openai`) and translated to Anthropic's Messages API and back (`anthropic`; the mock answers
# `/messages` in Anthropic's format); then the agent APIs translated: a Responses request served
# by `anthropic` (Responses → chat → Messages and back) and a Messages request served by `openai`
# (Messages → chat and back). Reports requests/s and the gateway's CPU microseconds per request
# for each, and each one's ratio to the untranslated chat request of the same round (the target:
# at most 1.5x).
#
# On a 2-core machine portgate is pinned to CPU 1 and wrk and the mock to CPU 0 (taskset), so
# the figures measure the gateway, not the scheduler. CPU time is read from /proc/<pid>/stat.
# Environment: DURATION (default 3s per row and round), ROUNDS (default 7), CONNS (default 16),
# PORTGATE_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-7}
CONNS=${CONNS:-16}
ACCESS_LOG=${ACCESS_LOG:-off}
# `groq` on the mock as a trusted custom host: an OpenAI-compatible provider without a
# Responses API of its own (Responses → chat and back, one translation).
EXTRA_YAML="anthropic: {base_url: http://127.0.0.1:18080/v1}
custom_hosts: {trusted: [\"127.0.0.1:18080\"]}"
groq='{"provider":"groq","custom_host":"http://127.0.0.1:18080/v1","api_key":"sk-bench"}'
source bench/common.sh
bench_prepare wrk
bench_start 1 taskset -c 1
taskset -pc 0 "$mock_pid" >/dev/null

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$gw_pid/stat"; }

# Runs wrk for one provider (and optionally a path and a body) and prints "rps cpu_us_per_request".
measure() {
  local provider=$1 path=${2:-/v1/chat/completions} body=${3:-} before after out reqs
  before=$(cpu_ticks)
  out=$(WRK_GATEWAY=1 WRK_PROVIDER=$provider WRK_BODY=$body taskset -c 0 wrk -t1 -c"$CONNS" \
    -d"$DURATION" -s bench/post.lua "http://$GW$path")
  after=$(cpu_ticks)
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
    echo "bench: errors through $provider $path:" >&2
    echo "$out" >&2
    exit 1
  fi
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(awk -v d=$((after - before)) -v t="$ticks" -v n="$reqs" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')"
}

question="What happens when you mix red & yellow?"
responses_body='{"model":"m","instructions":"Be brief.","input":"'"$question"'","max_output_tokens":256}'
messages_body='{"model":"m","max_tokens":256,"system":"Be brief.","messages":[{"role":"user","content":"'"$question"'"}]}'
for p in openai anthropic; do
  curl -sf -X POST "http://$GW/v1/chat/completions" -H "x-portkey-provider: $p" \
    -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' \
    -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}' >/dev/null
done
curl -sf -X POST "http://$GW/v1/responses" -H "x-portkey-provider: anthropic" \
  -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' -d "$responses_body" >/dev/null
curl -sf -X POST "http://$GW/v1/responses" -H "x-portkey-config: $groq" \
  -H 'content-type: application/json' -d "$responses_body" >/dev/null
curl -sf -X POST "http://$GW/v1/messages" -H "x-portkey-provider: openai" \
  -H 'content-type: application/json' -H 'x-api-key: sk-bench' -d "$messages_body" >/dev/null
# Rounds, each measuring every row in turn (the first row moving round by round): the VM
# drifts by 20-30% over minutes, so a row measured a minute after the untranslated one is not
# comparable to it; rows of one round are. Each row's ratio is the median of its rounds' own
# ratios to that round's untranslated chat.
rows=(chat_openai chat_anthropic responses_anthropic responses_compat messages_openai)
row() {
  case $1 in
    chat_openai) measure openai ;;
    chat_anthropic) measure anthropic ;;
    responses_anthropic) measure anthropic /v1/responses "$responses_body" ;;
    responses_compat) WRK_CONFIG=$groq measure groq /v1/responses "$responses_body" ;;
    messages_openai) measure openai /v1/messages "$messages_body" ;;
  esac
}
for round in $(seq "$ROUNDS"); do
  for k in $(seq 0 4); do
    r=${rows[$(((k + round) % 5))]}
    read -r rps cpu <<<"$(row "$r")"
    echo "$rps" >> "$tmp/$r.rps" && echo "$cpu" >> "$tmp/$r.cpu"
  done
  o=$(tail -1 "$tmp/chat_openai.cpu")
  for r in "${rows[@]}"; do
    awk -v a="$(tail -1 "$tmp/$r.cpu")" -v o="$o" 'BEGIN {printf "%.3f\n", a / o}' >> "$tmp/$r.ratio"
  done
  echo "round $round: $(for r in "${rows[@]}"; do echo -n "$r $(tail -1 "$tmp/$r.cpu") "; done)" >&2
done
echo "| request | requests/s (median) | CPU µs per request (median of $ROUNDS) | vs untranslated chat (rounds' median, quartiles) |"
echo "|---|---:|---:|---:|"
line() {
  echo "| $2 | $(median < "$tmp/$1.rps") | $(median < "$tmp/$1.cpu") | $(median_quartiles < "$tmp/$1.ratio" | awk '{printf "%.2fx (%.2f-%.2fx)", $1, $2, $3}') |"
}
line chat_openai "chat, openai (untranslated)"
line chat_anthropic "chat, anthropic (translated)"
line responses_anthropic "Responses API, anthropic (translated)"
line responses_compat "Responses API, an OpenAI-compatible provider (translated)"
line messages_openai "Messages API, openai (translated)"
