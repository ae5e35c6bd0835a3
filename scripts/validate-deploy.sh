#!/usr/bin/env bash
# Installs the offline manifest validator when missing, then validates deploy/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v python3 >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
fi
if ! python3 -c "import kubernetes_validate, jsonschema, yaml" 2>/dev/null; then
  echo "validate-deploy: installing kubernetes-validate" >&2
  python3 -m pip install -q kubernetes-validate 2>/dev/null \
    || python3 -m pip install -q --break-system-packages kubernetes-validate
fi
cargo build -q --bin portgate
python3 scripts/validate-deploy.py
