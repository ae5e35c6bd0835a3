#!/usr/bin/env bash
# Benchmark: the same chat request, non-streamed and streamed (8 events, a usage chunk and
# [DONE]; and a long answer of 200 events), sent straight to a fast mock provider and through
# three proxies in one run: an nginx
# reverse-proxy hop (1 worker), a bare Pingora 0.9 passthrough (bench/pingora_floor.rs, 1
# thread: the floor of the framework portgate stands on) and portgate (1 thread).
#
# On a 2-core machine the system under test is pinned to CPU 1 and wrk and the mock to CPU 0
# (taskset), so the figures measure the proxy, not the scheduler; CPU time of the system under
# test is read from /proc and divided by the requests served. Reports per target requests/s,
# p50/p99, added p50 against direct, CPU µs per request, peak RSS, and the ratios of portgate to
# the Pingora floor and to nginx. Any non-2xx answer or wrk socket error fails the run.
#
# Then, for each proxy: the added p50 with a single connection (c=1), the time to first byte of
# a chat answer and of a stream on a new connection (median of TTFB_RUNS curl runs), the idle
# RSS, and the memory per open idle stream (IDLE_STREAMS streams held open by
# bench/idle_streams.py; RSS growth divided by their number).
#
# Every cell is ROUNDS rounds of DURATION, the targets taking turns within a round, and the
# figures are the medians of the rounds (with the median and quartiles of the rounds' own
# portgate/floor and portgate/nginx CPU ratios): this VM drifts by 20-30% over an hour and has
# bursts of time stolen by the hypervisor, which a target measured alone for a whole cell can
# land in. First bytes on new connections are taken the same way, one request per target in
# turn. The share of CPU 1's time stolen during the run is reported.
#
# Environment: DURATION (default 2s), ROUNDS (default 7), CONNS (default 16), TTFB_RUNS (default 200),
# IDLE_STREAMS (default 1000), OUT (default
# bench/results/latest.md), PORTGATE_BIN, ACCESS_LOG (default stdout, written to /dev/null).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 8192 2>/dev/null || true

DURATION=${DURATION:-2s}
ROUNDS=${ROUNDS:-7}
CONNS=${CONNS:-16}
TTFB_RUNS=${TTFB_RUNS:-200}
IDLE_STREAMS=${IDLE_STREAMS:-1000}
OUT=${OUT:-bench/results/latest.md}
NGINX=127.0.0.1:18090
FLOOR=127.0.0.1:18091
source bench/common.sh
bench_prepare wrk nginx
cargo build --release --example bench_pingora_floor 2>&1 | tail -1
bench_start 1 taskset -c 1
taskset -pc 0 "$mock_pid" >/dev/null
idle_rss_start=$(awk '/^VmRSS:/ {print $2}' "/proc/$gw_pid/status")

mkdir -p "$tmp/nginx/logs"
cat > "$tmp/nginx/nginx.conf" <<NGINX
worker_processes 1;
error_log stderr error;
pid $tmp/nginx/nginx.pid;
events { worker_connections 8192; }
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

# Time to first byte (seconds) of one request on a new connection.
ttfb() {
  local addr=$1 gateway=$2 stream=$3 extra=() body
  body='{"messages":[{"role":"user","content":"What happens when you mix red & yellow?"}],"model":"gpt-4o-mini"'
  [ "$stream" = 1 ] && body="$body,\"stream\":true"
  body="$body}"
  [ "$gateway" = 1 ] && extra=(-H 'x-portkey-provider: openai')
  taskset -c 0 curl -s -o /dev/null -w '%{time_starttransfer}\n' -X POST \
    "http://$addr/v1/chat/completions" -H 'content-type: application/json' \
    -H 'authorization: Bearer sk-bench' "${extra[@]}" -d "$body"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# RSS (KiB) of a process and its children together (nginx's worker is a child of its master).
total_rss_kib() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do total=$((total + $(rss_kib "$p"))); done
  echo "$total"
}

# KiB of memory per open idle stream: IDLE_STREAMS streams held open through the proxy.
idle_stream_kib() {
  local addr=$1 pid=$2 gateway=$3 before after fifo
  before=$(total_rss_kib "$pid")
  fifo="$tmp/idle.fifo"
  rm -f "$fifo" && mkfifo "$fifo"
  taskset -c 0 python3 bench/idle_streams.py "$addr" "$IDLE_STREAMS" \
    "$([ "$gateway" = 1 ] && echo gateway)" <"$fifo" >"$tmp/idle.out" &
  local holder=$!
  exec 7>"$fifo"
  for _ in $(seq 600); do
    grep -q ready "$tmp/idle.out" 2>/dev/null && break
    kill -0 "$holder" 2>/dev/null || { echo "bench: idle streams failed on $addr" >&2; exit 1; }
    sleep 0.1
  done
  sleep 0.5
  after=$(total_rss_kib "$pid")
  exec 7>&-
  wait "$holder" || true
  awk -v a="$after" -v b="$before" -v n="$IDLE_STREAMS" 'BEGIN {printf "%.1f", (a - b) / n}'
}

# Column $2 (1-based) of the rounds file $1, median.
col_median() { awk -v c="$2" '{print $c}' "$1" | median; }
# Median and quartiles of the per-round ratios of two rounds files' CPU columns (line by line).
round_ratios() {
  paste -d' ' "$1" "$2" | awk '{printf "%.3f\n", $4 / $8}' | median_quartiles |
    awk '{printf "%.2fx (quartiles %.2fx-%.2fx)", $1, $2, $3}'
}
# CPU 1's stolen and total ticks so far (/proc/stat: the hypervisor's share is column 9).
cpu1_ticks() { awk '$1 == "cpu1" {t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t}' /proc/stat; }
read -r steal0 total0 <<<"$(cpu1_ticks)"

mkdir -p "$(dirname "$OUT")"
{
  echo "# portgate benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "machine: $(nproc) cores; system under test on CPU 1, wrk (-t1 -c$CONNS) and the mock on CPU 0;"
  echo "$ROUNDS rounds of $DURATION per cell, the targets taking turns within each round; medians of the rounds"
  echo
  echo "| scenario | target | requests/s | p50 ms | p99 ms | added p50 ms | CPU µs/request | peak RSS MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
} > "$OUT"
targets="direct nginx floor portgate"
# Sets addr, pid, gw and name for a target.
target_vars() {
  case $1 in
    direct) addr=$MOCK pid= gw=0 name=direct ;;
    nginx) addr=$NGINX pid=$nginx_pid gw=0 name="nginx hop" ;;
    floor) addr=$FLOOR pid=$floor_pid gw=0 name="bare Pingora" ;;
    portgate) addr=$GW pid=$gw_pid gw=1 name=portgate ;;
  esac
}
# Runs ROUNDS rounds of every target in turn (this VM drifts by 20-30% over minutes and has
# bursts of stolen time: a target measured alone for a whole cell can land in one); each
# target's rounds go to $tmp/rounds.<cell>.<target>, one "rps p50 p99 cpu" line per round.
rounds() {
  local cell=$1 stream=$2 model=$3 conns=$4 target
  for _ in $(seq "$ROUNDS"); do
    for target in $targets; do
      target_vars "$target"
      measure "$addr" "$pid" "$stream" "$gw" "$model" "$conns" >> "$tmp/rounds.$cell.$target"
    done
  done
}
ratios=
# Median CPU µs per request of each target in the current scenario.
declare -A cpu
for scenario in chat stream8 stream200; do
  case $scenario in
    chat) stream=0 model=gpt-4o-mini title=chat ;;
    stream8) stream=1 model=gpt-4o-mini title="stream (8 events)" ;;
    stream200) stream=1 model=bench-200 title="stream (200 events)" ;;
  esac
  rounds "$scenario" "$stream" "$model" "$CONNS"
  d_p50=$(col_median "$tmp/rounds.$scenario.direct" 2)
  for target in $targets; do
    target_vars "$target"
    f="$tmp/rounds.$scenario.$target"
    if [ "$target" = direct ]; then
      echo "| $title | direct | $(col_median "$f" 1) | $d_p50 | $(col_median "$f" 3) | - | - | - |" >> "$OUT"
      continue
    fi
    p50=$(col_median "$f" 2)
    cpu[$target]=$(col_median "$f" 4)
    echo "| $title | $name | $(col_median "$f" 1) | $p50 | $(col_median "$f" 3) | $(awk -v a="$p50" -v d="$d_p50" 'BEGIN {printf "%.3f", a - d}') | ${cpu[$target]} | $(( $(peak_kib "$pid") / 1024 )) |" >> "$OUT"
  done
  ratios="$ratios$(awk -v p="${cpu[portgate]}" -v f="${cpu[floor]}" -v n="${cpu[nginx]}" -v s="$title" \
    'BEGIN {printf "%s: portgate / Pingora floor %.2fx, portgate / nginx %.2fx CPU per request (medians)", s, p / f, p / n}')"
  ratios="$ratios; rounds' own ratios: $(round_ratios "$tmp/rounds.$scenario.portgate" "$tmp/rounds.$scenario.floor") the floor, $(round_ratios "$tmp/rounds.$scenario.portgate" "$tmp/rounds.$scenario.nginx") nginx"$'\n'
done
printf '\n%s\n' "$ratios" >> "$OUT"

{
  echo "| one connection and new connections | direct | nginx hop | bare Pingora | portgate |"
  echo "|---|---:|---:|---:|---:|"
} >> "$OUT"
rounds c1 0 gpt-4o-mini 1
# Time to first byte on a new connection: one curl per target in turn, TTFB_RUNS times.
for _ in $(seq "$TTFB_RUNS"); do
  for target in $targets; do
    target_vars "$target"
    ttfb "$addr" "$gw" 0 >> "$tmp/ttfb.chat.$target"
    ttfb "$addr" "$gw" 1 >> "$tmp/ttfb.stream.$target"
  done
done
d_c1=$(col_median "$tmp/rounds.c1.direct" 2)
row_c1="| chat c=1: p50 ms (added) | $d_c1 |"
row_chat="| first byte on a new connection, chat ms |"
row_stream="| first byte on a new connection, stream ms |"
for target in $targets; do
  if [ "$target" != direct ]; then
    p50=$(col_median "$tmp/rounds.c1.$target" 2)
    row_c1="$row_c1 $p50 ($(awk -v a="$p50" -v d="$d_c1" 'BEGIN {printf "%+.3f", a - d}')) |"
  fi
  row_chat="$row_chat $(median < "$tmp/ttfb.chat.$target" | awk '{printf "%.3f", $1 * 1000}') |"
  row_stream="$row_stream $(median < "$tmp/ttfb.stream.$target" | awk '{printf "%.3f", $1 * 1000}') |"
done
printf '%s\n%s\n%s\n\n' "$row_c1" "$row_chat" "$row_stream" >> "$OUT"

{
  echo "| memory | nginx hop | bare Pingora | portgate |"
  echo "|---|---:|---:|---:|"
  echo "| RSS now, MiB | $(awk -v k="$(total_rss_kib "$nginx_pid")" 'BEGIN {printf "%.1f", k / 1024}') | $(awk -v k="$(rss_kib "$floor_pid")" 'BEGIN {printf "%.1f", k / 1024}') | $(awk -v k="$(rss_kib "$gw_pid")" 'BEGIN {printf "%.1f", k / 1024}') |"
  echo "| KiB per open idle stream ($IDLE_STREAMS streams) | $(idle_stream_kib "$NGINX" "$nginx_pid" 0) | $(idle_stream_kib "$FLOOR" "$floor_pid" 0) | $(idle_stream_kib "$GW" "$gw_pid" 1) |"
  echo
  echo "portgate idle RSS at start: $(awk -v k="$idle_rss_start" 'BEGIN {printf "%.1f", k / 1024}') MiB"
  read -r steal1 total1 <<<"$(cpu1_ticks)"
  awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) \
    'BEGIN {printf "CPU 1 time stolen by the hypervisor during the run: %.1f%%\n", t ? 100 * s / t : 0}'
} >> "$OUT"
cat "$OUT"
