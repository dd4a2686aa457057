#!/usr/bin/env bash
# Set everything up and run every check: ruff, mypy, then the test layers (unit, component,
# integration on the real models and clips). With CI=true nothing may skip.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh edge,server,demo,dev
if [ -z "${ZHIZHI_MODEL_DIR:-}" ] && [ -d ../shared/models ]; then
  export ZHIZHI_MODEL_DIR="$(cd ../shared/models && pwd)"
fi
if [ -z "${ZHIZHI_CLIPS_DIR:-}" ] && [ -d ../shared/clips ]; then
  export ZHIZHI_CLIPS_DIR="$(cd ../shared/clips && pwd)"
fi
export PYTHONDONTWRITEBYTECODE=1
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== tests"
.venv/bin/pytest -p no:cacheprovider tests "$@"
