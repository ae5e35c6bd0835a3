#!/usr/bin/env bash
# Soak run (minutes; not part of `make test`): portgate under a steady mixed load (plain chat,
# fallback and retry configs, invalid requests) against the fast mock, sampling its resident
# memory and open file descriptors before, during and after. Fails when descriptors leak
# (more than 8 above the idle count after the load) or memory does not settle (after the load
# more than twice the idle RSS plus 32 MiB), or when wrk reports any socket error.
#
# Environment: SOAK_SECONDS (default 180), CONNS (default 32), THREADS (portgate threads,
# default 2), PORTGATE_BIN (binary to measure instead of the fresh release build).
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECONDS=${SOAK_SECONDS:-180}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ACCESS_LOG=${ACCESS_LOG:-off}
# Pooled provider connections are closed 3 s after their last use, so that what is open after
# the load settles is what leaked, not the pool.
EXTRA_YAML="upstream: {idle_timeout_ms: 3000}"
source bench/common.sh
bench_prepare wrk
bench_start "$THREADS"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$gw_pid/status"; }
fds() { find "/proc/$gw_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
sample() { printf '%-8s %8s KiB RSS %6s fds\n' "$1" "$(rss_kib)" "$(fds)"; }

curl -sf -X POST "http://$GW/v1/chat/completions" -H 'x-portkey-provider: openai' \
  -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[]}' >/dev/null
idle_rss=$(rss_kib)
idle_fds=$(fds)
echo "portgate soak: ${SOAK_SECONDS}s, $CONNS connections, threads=$THREADS"
sample idle
wrk -t1 -c"$CONNS" -d"${SOAK_SECONDS}s" -s bench/soak.lua "http://$GW" > "$tmp/wrk.out" &
wrk_pid=$!
elapsed=0
while kill -0 "$wrk_pid" 2>/dev/null; do
  sleep 15
  elapsed=$((elapsed + 15))
  kill -0 "$wrk_pid" 2>/dev/null && sample "${elapsed}s"
done
wait "$wrk_pid"
# Past the pool's idle timeout, and a sweep of it.
sleep 8
after_rss=$(rss_kib)
after_fds=$(fds)
sample after
grep -E "requests in|Requests/sec|Non-2xx|Socket errors" "$tmp/wrk.out" || true

status=0
if grep -q "Socket errors" "$tmp/wrk.out"; then
  echo "soak: wrk reported socket errors" >&2
  status=1
fi
if [ "$after_fds" -gt $((idle_fds + 8)) ]; then
  echo "soak: file descriptors grew from $idle_fds to $after_fds" >&2
  status=1
fi
if [ "$after_rss" -gt $((idle_rss * 2 + 32768)) ]; then
  echo "soak: RSS did not settle: $idle_rss KiB idle, $after_rss KiB after" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "soak: ok (RSS ${idle_rss} -> ${after_rss} KiB, fds ${idle_fds} -> ${after_fds})"
exit "$status"
