#!/usr/bin/env bash
# Differential conformance check: portgate vs Portkey's open-source gateway 1.15.2.
# Installs Portkey (pinned) into target/conformance when missing, builds portgate (release)
# unless PORTGATE_BIN names a binary, then runs runner.py. Extra arguments go to runner.py
# (e.g. --only 'provider-*' -v). Exit status: 0 = no undocumented difference.
#
#   make conformance
#   PORTGATE_BIN=/path/to/portgate ./scripts/conformance/run.sh --only 'chat-*' -v
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache="$root/target/conformance"
work="$cache/run"

for tool in node npm python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "conformance: $tool is required" >&2; exit 1; }
done

# Portkey, pinned. package.json pins @portkey-ai/gateway 1.15.2 and @hono/node-server 1.14.1:
# with the newest @hono/node-server (>= 1.14.2) Portkey's streaming and passthrough routes fail
# with "TypeError: immutable" (Portkey-AI/gateway#1389), which would hide its real behaviour.
if [ -n "${PORTKEY_DIR:-}" ]; then
  portkey_dir="$PORTKEY_DIR"
else
  portkey_dir="$cache/node_modules/@portkey-ai/gateway"
  if [ ! -f "$portkey_dir/build/start-server.js" ] || ! cmp -s "$here/package.json" "$cache/package.json"; then
    echo "conformance: installing @portkey-ai/gateway 1.15.2 into $cache" >&2
    mkdir -p "$cache"
    cp "$here/package.json" "$cache/package.json"
    npm install --no-audit --no-fund --prefix "$cache" >&2
  fi
fi
version=$(node -p "require('$portkey_dir/package.json').version")
if [ "$version" != "1.15.2" ]; then
  echo "conformance: expected @portkey-ai/gateway 1.15.2 in $portkey_dir, found $version" >&2
  exit 1
fi

if [ -n "${PORTGATE_BIN:-}" ]; then
  portgate_bin="$PORTGATE_BIN"
else
  (cd "$root" && ./scripts/ensure-deps.sh && "${CARGO:-cargo}" build --release --bin portgate)
  portgate_bin="$root/target/release/portgate"
fi
[ -x "$portgate_bin" ] || { echo "conformance: no portgate binary at $portgate_bin" >&2; exit 1; }

# runner.py stops everything it started (and then empties the pid file); this trap is the
# backstop if it dies hard or this script is signalled. It kills only the runner and the
# process ids the runner recorded.
mkdir -p "$work"
pidfile="$work/pids"
: > "$pidfile"
runner=
cleanup() {
  if [ -n "$runner" ]; then kill "$runner" 2>/dev/null || true; fi
  if [ -s "$pidfile" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done < "$pidfile"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# In the background so a signal to this script runs the traps at once (bash defers traps
# while a foreground child runs).
python3 "$here/runner.py" --portkey-dir "$portkey_dir" --portgate-bin "$portgate_bin" \
  --work "$work" --pidfile "$pidfile" "$@" &
runner=$!
rc=0
wait "$runner" || rc=$?
runner=
exit "$rc"
