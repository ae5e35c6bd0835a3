#!/usr/bin/env bash
# What rate limits and a budget cost a request: the same build in alternating rounds
# (bench/ab.sh), A without limits on the bench's virtual key, B with one request limit and one
# budget on it — counted in the process (memory), then in a Redis on loopback. Reports CPU µs
# per request and p50 latency of both; the Redis round's p50 difference is the round trip the
# admission adds (its usage charge runs after the answer, off the client's path).
#
# Usage: bench/limits.sh [BINARY]   (default: the release build). ROUNDS, DURATION as ab.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_prepare wrk
bin=${1:-$RELEASE_DIR/portgate}
port=$((20000 + RANDOM % 20000))
taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  > /dev/null 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
until redis-cli -p "$port" ping > /dev/null 2>&1; do sleep 0.05; done
vk() {
  cat <<YAML
virtual_keys:
  bench:
    provider: openai
$1
YAML
}
limits="    rate_limits: [{type: requests, unit: rpm, value: 100000000}]
    usage_limits: [{type: cost, credit_limit: 1000000, periodic_reset: monthly}]"
export WRK_VIRTUAL_KEY=bench
echo "## memory backend"
EXTRA_YAML_A="$(vk '')" EXTRA_YAML_B="$(vk "$limits")" bench/ab.sh "$bin" "$bin"
echo "## redis backend (loopback)"
EXTRA_YAML_A="$(vk '')" EXTRA_YAML_B="$(vk "$limits")
limits:
  backend: redis
  redis: {url: \"redis://127.0.0.1:$port/\"}" bench/ab.sh "$bin" "$bin"
