#!/usr/bin/env bash
# Outage drill (bench/drill.rs): builds the release gateway and the drill, then runs the drill
# pinned to CPU 0 with each gateway it starts pinned to CPU 1 (on a machine with one CPU, both
# unpinned). The table goes to stdout and to OUT (default bench/results/drill.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin portgate --example drill 2>&1 | tail -1
RELEASE_DIR=${CARGO_TARGET_DIR:-target}/release
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  GW_CPU=${GW_CPU:-1} PORTGATE_BIN=${PORTGATE_BIN:-$RELEASE_DIR/portgate} \
    taskset -c 0 "$RELEASE_DIR/examples/drill"
else
  GW_CPU= PORTGATE_BIN=${PORTGATE_BIN:-$RELEASE_DIR/portgate} "$RELEASE_DIR/examples/drill"
fi
