#!/usr/bin/env bash
# Create ./.venv in the checkout and install Zhizhi with the edge extra and the dev tools.
# Usage: scripts/setup.sh [extra,...]   (default: edge,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-edge,dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
echo "installed: ./.venv/bin/zhizhi ($(.venv/bin/zhizhi --help >/dev/null && echo ok))"
