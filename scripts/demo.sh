#!/usr/bin/env bash
# Set everything up and run `zhizhi demo`. Models come from $ZHIZHI_MODEL_DIR, else from
# ../shared/models when this checkout sits beside it, else see models/README.md (fetch step).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh edge,server,demo,dev
if [ -z "${ZHIZHI_MODEL_DIR:-}" ] && [ -d ../shared/models ]; then
  export ZHIZHI_MODEL_DIR="$(cd ../shared/models && pwd)"
fi
exec ./.venv/bin/zhizhi demo "$@"
