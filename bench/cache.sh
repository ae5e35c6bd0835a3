#!/usr/bin/env bash
# Cache benchmark: the same chat request (whole and streamed) through portgate (1 thread) as an
# uncached pass-through to the instant mock, as a memory-cache hit and as a Redis-cache hit, in
# one run. Pinned like run.sh: portgate on CPU 1, wrk, the mock and redis-server on CPU 0. Every
# request of a cached cell is the same, so after the warm-up each is a hit (checked: the cell
# fails unless the cache counted as many hits as wrk sent requests). Then the semantic lookup
# microbenchmark (bench/semantic_lookup.rs). Reports requests/s, p50/p99 and portgate's CPU µs
# per request.
#
# Environment: DURATION (default 10s), CONNS (default 16), OUT (default
# bench/results/cache.md), REDIS_PORT (default 18379).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
OUT=${OUT:-bench/results/cache.md}
REDIS_PORT=${REDIS_PORT:-18379}
source bench/common.sh
# Ports of their own, so this can run beside bench/run.sh.
MOCK=127.0.0.1:${CACHE_BENCH_MOCK_PORT:-18180}
GW=127.0.0.1:${CACHE_BENCH_GW_PORT:-18887}
ADMIN=127.0.0.1:${CACHE_BENCH_ADMIN_PORT:-18888}
bench_prepare wrk
cargo build --release --example bench_semantic 2>&1 | tail -1

taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  >"$tmp/redis.log" 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; bench_cleanup' EXIT

# The request post.lua sends names no config: the default config decides caching.
cached_yaml() {
  cat <<YAML
configs:
  cached: {"provider": "openai", "cache": {"mode": "simple"}}
default_config: cached
cache:
  backend: $1
  redis:
    url: redis://127.0.0.1:$REDIS_PORT/
YAML
}

restart() {
  if [ -n "$gw_pid" ]; then kill -INT "$gw_pid" 2>/dev/null || true; fi
  if [ -n "$mock_pid" ]; then kill "$mock_pid" 2>/dev/null || true; fi
  wait "$gw_pid" "$mock_pid" 2>/dev/null || true
  gw_pid= mock_pid=
  bench_start 1 taskset -c 1
  taskset -pc 0 "$mock_pid" >/dev/null
}

hits() {
  curl -s "http://$ADMIN/metrics" | awk '/^portgate_cache_requests_total\{.*result="hit"/ {s += $2} END {print s + 0}'
}

mkdir -p "$(dirname "$OUT")"
{
  echo "# portgate cache benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "machine: $(nproc) cores; portgate (1 thread) on CPU 1, wrk (-t1 -c$CONNS), the mock and redis-server on CPU 0; $DURATION per cell"
  echo
  echo "| scenario | path | requests/s | p50 ms | p99 ms | CPU µs/request |"
  echo "|---|---|---:|---:|---:|---:|"
} > "$OUT"
for mode in passthrough memory redis; do
  if [ "$mode" = passthrough ]; then
    EXTRA_YAML= restart
  else
    EXTRA_YAML=$(cached_yaml "$mode") restart
  fi
  for stream in 0 1; do
    scenario=$([ "$stream" = 1 ] && echo "stream (8 events)" || echo chat)
    if [ "$mode" != passthrough ]; then
      # Warm-up: the first request is the miss that stores the entry.
      body='{"messages":[{"role":"user","content":"What happens when you mix red & yellow?"}],"model":"gpt-4o-mini"}'
      [ "$stream" = 1 ] && body=${body%\}}',"stream":true}'
      curl -s -o /dev/null -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' \
        -H 'x-portkey-provider: openai' -d "$body" "http://$GW/v1/chat/completions"
      sleep 0.5
      before=$(hits)
    fi
    r=$(measure "$GW" "$gw_pid" "$stream" 1)
    read -r rps p50 p99 cpu <<<"$r"
    if [ "$mode" != passthrough ]; then
      after=$(hits)
      echo "bench: $mode $scenario: $((after - before)) hits" >&2
      if [ $((after - before)) -lt 1000 ]; then
        echo "bench: the $mode cache did not serve the requests (hits: $((after - before)))" >&2
        exit 1
      fi
    fi
    label=$([ "$mode" = passthrough ] && echo "uncached pass-through" || echo "$mode hit")
    echo "| $scenario | $label | $rps | $p50 | $p99 | $cpu |" >> "$OUT"
  done
done
{
  echo
  echo "Semantic lookup (one scope, brute force, \`bench_semantic\`, CPU 1):"
  echo
  taskset -c 1 "$RELEASE_DIR/examples/bench_semantic"
} >> "$OUT"
cat "$OUT"
