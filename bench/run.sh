#!/usr/bin/env bash
# Benchmark: the same chat request, non-streamed and streamed (8 events, a usage chunk and
# [DONE]), sent straight to a fast mock provider and through three proxies in one run: an nginx
# reverse-proxy hop (1 worker), a bare Pingora 0.9 passthrough (bench/pingora_floor.rs, 1
# thread: the floor of the framework portgate stands on) and portgate (1 thread).
#
# On a 2-core machine the system under test is pinned to CPU 1 and wrk and the mock to CPU 0
# (taskset), so the figures measure the proxy, not the scheduler; CPU time of the system under
# test is read from /proc and divided by the requests served. Reports per target requests/s,
# p50/p99, added p50 against direct, CPU µs per request, peak RSS, and the ratios of portgate to
# the Pingora floor and to nginx. Any non-2xx answer or wrk socket error fails the run.
#
# Environment: DURATION (default 10s), CONNS (default 16), OUT (default
# bench/results/latest.md), PORTGATE_BIN, ACCESS_LOG (default stdout, captured to a file).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
OUT=${OUT:-bench/results/latest.md}
NGINX=127.0.0.1:18090
FLOOR=127.0.0.1:18091
source bench/common.sh
bench_prepare wrk nginx
cargo build --release --example bench_pingora_floor 2>&1 | tail -1
bench_start 1 taskset -c 1
taskset -pc 0 "$mock_pid" >/dev/null

mkdir -p "$tmp/nginx/logs"
cat > "$tmp/nginx/nginx.conf" <<NGINX
worker_processes 1;
error_log stderr error;
pid $tmp/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  upstream mock { server $MOCK; keepalive 64; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
taskset -c 1 nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' 2>"$tmp/nginx.err" &
nginx_pid=$!
taskset -c 1 "$RELEASE_DIR/examples/bench_pingora_floor" "$FLOOR" "$MOCK" >"$tmp/floor.log" 2>&1 &
floor_pid=$!
trap 'kill "$nginx_pid" "$floor_pid" 2>/dev/null; bench_cleanup' EXIT
for addr in "$NGINX" "$FLOOR"; do
  for _ in $(seq 100); do
    curl -s -o /dev/null -X POST "http://$addr/v1/chat/completions" -d '{}' && break
    sleep 0.1
  done
done

mkdir -p "$(dirname "$OUT")"
{
  echo "# portgate benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "machine: $(nproc) cores; system under test on CPU 1, wrk (-t1 -c$CONNS) and the mock on CPU 0; $DURATION per cell"
  echo
  echo "| scenario | target | requests/s | p50 ms | p99 ms | added p50 ms | CPU µs/request | peak RSS MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
} > "$OUT"
for stream in 0 1; do
  scenario=$([ "$stream" = 1 ] && echo "stream (8 events)" || echo chat)
  direct=$(measure "$MOCK" "" "$stream" 0)
  read -r d_rps d_p50 d_p99 _ <<<"$direct"
  echo "| $scenario | direct | $d_rps | $d_p50 | $d_p99 | - | - | - |" >> "$OUT"
  for target in nginx floor portgate; do
    case $target in
      nginx) addr=$NGINX pid=$nginx_pid gw=0 name="nginx hop" ;;
      floor) addr=$FLOOR pid=$floor_pid gw=0 name="bare Pingora" ;;
      portgate) addr=$GW pid=$gw_pid gw=1 name=portgate ;;
    esac
    r=$(measure "$addr" "$pid" "$stream" "$gw")
    read -r rps p50 p99 cpu <<<"$r"
    eval "cpu_$target=$cpu"
    added=$(awk -v a="$p50" -v d="$d_p50" 'BEGIN {printf "%.3f", a - d}')
    echo "| $scenario | $name | $rps | $p50 | $p99 | $added | $cpu | $(( $(peak_kib "$pid") / 1024 )) |" >> "$OUT"
  done
  # shellcheck disable=SC2154
  awk -v p="$cpu_portgate" -v f="$cpu_floor" -v n="$cpu_nginx" -v s="$scenario" \
    'BEGIN {printf "\n%s: portgate / Pingora floor %.2fx, portgate / nginx %.2fx CPU per request\n\n", s, p / f, p / n}' >> "$OUT"
done
cat "$OUT"
