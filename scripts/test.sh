#!/usr/bin/env bash
# Set everything up and run every check: ruff, mypy, then the test layers (unit, component,
# integration on the real models and clips). With CI=true nothing may skip.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh edge,server,demo,dev
# Training tests (issue 7): torch first, from the pair ultralytics works with here (pip takes
# it from local disk), so the training extra does not pull another torch from PyPI.
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet -e ".[edge,server,demo,dev,training]"
# The dashboard's browser test drives Debian's Chromium (Playwright's own download is not used);
# a CJK font makes its screenshots legible.
if ! command -v chromium >/dev/null; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get install -y chromium fonts-wqy-microhei \
    || { $sudo_cmd apt-get update && $sudo_cmd apt-get install -y chromium fonts-wqy-microhei; }
fi
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
