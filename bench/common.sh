# Shared by the bench scripts (sourced, not run): tools, build, the mock, portgate's config and
# start-up, and a cleanup that stops both. Sets MOCK, GW, ADMIN, tmp, mock_pid, gw_pid.

MOCK=${MOCK:-127.0.0.1:18080}
GW=${GW:-127.0.0.1:18787}
ADMIN=${ADMIN:-127.0.0.1:18788}
# Where cargo puts the release build (honours CARGO_TARGET_DIR like cargo does).
RELEASE_DIR=${CARGO_TARGET_DIR:-target}/release

# Installs the named tools when missing (Debian), then what the build needs, then builds.
bench_prepare() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "bench: installing $tool" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    fi
  done
  ./scripts/ensure-deps.sh
  cargo build --release --bin portgate --example bench_mock 2>&1 | tail -1
}

# Median of the numbers on stdin, one per line.
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# Median, first and third quartile of the numbers on stdin, one per line: "median q1 q3".
median_quartiles() {
  sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)], v[int(NR / 4) + 1], v[int(3 * NR / 4) + 1]}'
}

tmp=$(mktemp -d)
mock_pid=
gw_pid=
# SIGINT stops portgate at once, cutting anything in flight (Pingora's fast shutdown; SIGTERM
# would first drain requests still running, up to the grace period); the mock takes SIGTERM.
bench_cleanup() {
  [ -n "$gw_pid" ] && kill -INT "$gw_pid" 2>/dev/null
  [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap bench_cleanup EXIT

# Starts the mock (unless mock_pid names one already running), then portgate with THREADS
# worker threads (first argument) and
# `log.access_log` from ACCESS_LOG when set, and EXTRA_YAML (top-level settings) appended;
# any further arguments are a command that wraps
# portgate (e.g. valgrind). PORTGATE_BIN measures another build. Returns once /readyz answers.
bench_start() {
  local threads=$1
  shift
  if [ -z "$mock_pid" ]; then
    "$RELEASE_DIR/examples/bench_mock" "$MOCK" &
    mock_pid=$!
  fi
  cat > "$tmp/portgate.yaml" <<YAML
listen: $GW
admin_listen: $ADMIN
threads: $threads
providers:
  openai:
    base_url: http://$MOCK/v1
log:
  level: error
${ACCESS_LOG:+  access_log: $ACCESS_LOG}
${EXTRA_YAML:-}
YAML
  # The access log (stdout) is written to /dev/null. Written to a file here, its pages'
  # writeback lands on the gateway's CPU seconds later and slows whichever measurement runs
  # then (seen: c=1 requests/s fell from 3.6k to 0.9k over four 5 s runs as the file grew,
  # and held at 4.0-4.3k with the log off); drained from a pipe by another process, the
  # reader takes CPU 0 from the load generator and the flusher blocks on the 64 KiB pipe
  # (seen: chat CPU per request 2.1x the floor's, against 1.5-1.65x with a file). In a pod the
  # container runtime drains stdout elsewhere; what portgate pays itself, the serialisation
  # and one write call per 100 ms, it pays here too.
  "$@" "${PORTGATE_BIN:-$RELEASE_DIR/portgate}" --config "$tmp/portgate.yaml" \
    > /dev/null 2> "$tmp/portgate.log" &
  gw_pid=$!
  for _ in $(seq 600); do
    curl -sf "http://$ADMIN/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench: portgate did not become ready; its log:" >&2
  cat "$tmp/portgate.log" >&2
  return 1
}

# Measuring (used by run.sh and cache.sh).
ticks=$(getconf CLK_TCK)
# CPU ticks of a process and its children (nginx's worker is a child of its master), less
# the ticks of its threads named EXCLUDE_THREAD when set (work off the request path, such as
# the log store's writer, reported on its own).
cpu_ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  if [ -n "${EXCLUDE_THREAD:-}" ]; then
    total=$((total - $(thread_ticks "$1" "$EXCLUDE_THREAD")))
  fi
  echo "$total"
}
# CPU ticks of the threads of process $1 whose name is $2 (as /proc shows it: 15 characters),
# from each thread's run time in nanoseconds (`schedstat`). Not from the thread's own `stat`:
# its utime and stime are sampled per tick, and on this VM they showed about half a busy
# thread's time (161 ticks against the process's 299 for the one busy thread, whose
# `schedstat` said 2.99 s), so subtracting them left half the thread in the remainder.
thread_ticks() {
  local total=0 t
  for t in /proc/"$1"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ] || continue
    total=$((total + $(awk -v hz="$ticks" '{printf "%d", $1 * hz / 1e9}' "$t/schedstat")))
  done
  echo "$total"
}
peak_kib() {
  local peak=0 p v
  for p in "$1" $(pgrep -P "$1" || true); do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")
    [ "$v" -gt "$peak" ] && peak=$v
  done
  echo "$peak"
}
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

# Runs wrk against one target; prints "rps p50_ms p99_ms cpu_us_per_request".
# Arguments: address, pid (empty for direct), stream (0/1), gateway (0/1), and optionally the
# model (default gpt-4o-mini; bench-200 asks the mock for 200 events) and connections
# (default CONNS).
measure() {
  local addr=$1 pid=$2 stream=$3 gateway=$4 model=${5:-gpt-4o-mini} conns=${6:-$CONNS}
  local before after out reqs cpu
  before=$([ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
  out=$(WRK_GATEWAY=$gateway WRK_STREAM=$stream WRK_MODEL=$model taskset -c 0 wrk -t1 \
    -c"$conns" -d"$DURATION" --latency -s bench/post.lua "http://$addr/v1/chat/completions")
  after=$([ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
    echo "bench: errors from $addr (stream=$stream model=$model):" >&2
    echo "$out" >&2
    exit 1
  fi
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  cpu=$([ -n "$pid" ] && awk -v d=$((after - before)) -v t="$ticks" -v n="$reqs" \
    'BEGIN {printf "%.1f", d / t * 1e6 / n}' || echo "-")
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")" \
    "$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")" "$cpu"
}

