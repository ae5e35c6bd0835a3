#!/usr/bin/env bash
# Installs what building and testing portgate needs when it is missing: cmake (Pingora's
# zlib-ng build runs it), a C compiler, redis-server (the Redis cache tests start their
# own) and PostgreSQL's server (the log store tests start their own; Debian installs its
# binaries under /usr/lib/postgresql/<version>/bin, off PATH). On a machine without apt-get, or without the rights to use it, stops with one line
# naming what to install.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v cargo >/dev/null 2>&1 || { echo "portgate: install a Rust toolchain (cargo) first: https://rustup.rs" >&2; exit 1; }

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
fi

if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
  echo "portgate: installing ${missing[*]} with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "portgate: please install: ${missing[*]} (needed to build and test portgate)" >&2
  exit 1
fi
