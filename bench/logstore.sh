#!/usr/bin/env bash
# What the log store costs a request: the same build in alternating rounds (bench/ab.sh), A
# without a store, B with `log_store: postgres` and `bodies: true` on a PostgreSQL on loopback
# (started here, on the load's CPU). Reports B/A CPU per request twice: the whole process, and
# the request path alone (the store's writer thread left out: its decoding, redaction and
# inserts run off the request path), and the request path once more with both builds offered
# the same request rate; then the writer's own CPU per request, and whether the store kept up:
# records written against requests sent, and records dropped.
#
# Usage: bench/logstore.sh [BINARY]   (default: the release build). ROUNDS, DURATION as ab.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
CONNS=${CONNS:-16}
bench_prepare wrk
bin=$(realpath "${1:-$RELEASE_DIR/portgate}")

# A throw-away PostgreSQL as its own user in a temporary directory.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg_dir=$(mktemp -d)
pg_port=$((20000 + RANDOM % 20000))
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$pg_dir"
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --reset-env)
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U portgate -A trust --no-sync -E UTF8 \
  --locale=C > /dev/null
# Niced: the database takes the load generator's idle time on CPU 0, not the generator's share
# (started as a peer, it slowed the generator and so lowered B's request rate, which alone
# raises a gateway's CPU per request).
taskset -c 0 nice -n 19 "${as_pg[@]}" "$pg_bin/postgres" -D "$pg_dir/data" -p "$pg_port" -k "$pg_dir/data" \
  -c listen_addresses=127.0.0.1 > "$pg_dir/log" 2>&1 &
pg_pid=$!
trap 'kill -INT "$pg_pid" 2>/dev/null; wait "$pg_pid" 2>/dev/null; rm -rf "$pg_dir"; bench_cleanup' EXIT
until "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; do sleep 0.1; done
url="postgres://portgate@127.0.0.1:$pg_port/postgres"
store="log_store:
  backend: postgres
  bodies: true
  postgres: {url: \"$url\"}"
writer=portgate-log-st

echo "## whole process (the writer thread included)"
EXTRA_YAML_B="$store" bench/ab.sh "$bin" "$bin"
echo "## request path (the writer thread left out)"
EXCLUDE_THREAD=$writer EXTRA_YAML_B="$store" bench/ab.sh "$bin" "$bin"
# At full speed the two builds run at different rates (the database takes part of the load's
# CPU in B only, so B's load is slower), and a gateway serving fewer requests per second spends
# more CPU on each. Paced (each connection waits 1 ms after each answer), both are offered about
# the same rate, below what either serves.
echo "## request path, both builds offered about the same rate (WRK_DELAY_MS=1)"
WRK_DELAY_MS=1 EXCLUDE_THREAD=$writer EXTRA_YAML_B="$store" bench/ab.sh "$bin" "$bin"

echo "## the writer, and whether the store kept up"
DURATION=${KEEP_UP_DURATION:-10s}
"$pg_bin/psql" -qtA "$url" -c "TRUNCATE portgate_requests" > /dev/null
EXTRA_YAML="$store" PORTGATE_BIN=$bin bench_start 1 taskset -c 1
before=$(thread_ticks "$gw_pid" "$writer")
read -r rps p50 p99 _ <<<"$(measure "$GW" "$gw_pid" 0 1 gpt-4o-mini "$CONNS")"
after=$(thread_ticks "$gw_pid" "$writer")
sleep 1
metrics=$(curl -s "http://$ADMIN/metrics")
written=$(echo "$metrics" | awk '/^portgate_log_store_records_total\{kind="request"\}/ {print $2}')
dropped=$(echo "$metrics" | awk '/^portgate_log_store_dropped_total/ {s += $2} END {print s + 0}')
sent=$(echo "$metrics" | awk '/^portgate_requests_total\{/ && /route="chat_completions"/ {s += $2} END {print s + 0}')
rows=$("$pg_bin/psql" -qtA "$url" -c "SELECT count(*) FROM portgate_requests")
echo "requests/s $rps, p50 $p50 ms, p99 $p99 ms"
awk -v d=$((after - before)) -v t="$ticks" -v n="$written" \
  'BEGIN {printf "writer thread: %.1f CPU µs per stored request\n", d / t * 1e6 / n}'
echo "requests answered $sent, records written $written, rows $rows, dropped $dropped"
