#!/usr/bin/env bash
# Write the lock files (exact versions with sha256 hashes, every platform) that the images and
# scripts/setup.sh install from: requirements/{edge,server,training,dev}.lock.
# Run after changing the dependencies in pyproject.toml; needs uv (pip install uv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-uv}"
command -v "$uv" >/dev/null || uv=.venv/bin/uv
lock() {  # lock NAME EXTRA... [-- uv options]
  local name="$1"; shift
  local args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=(--extra "$1"); shift; done
  [ "${1:-}" = "--" ] && shift
  "$uv" pip compile pyproject.toml "${args[@]}" "$@" --python-version 3.11 \
    --generate-hashes --no-header --quiet -o "requirements/${name}.lock"
  echo "requirements/${name}.lock: $(grep -c '==' "requirements/${name}.lock") packages"
}
# The images: every platform (edge boxes are x86-64 or ARM).
lock edge edge -- --universal
lock server server -- --universal
# Training machines and the developers' and CI's machines are x86-64 Linux; resolved for that
# platform alone (a universal resolution holds back onnx, whose new releases need numpy 2 on
# later Pythons, which the edge does not take yet).
lock training edge training -- --python-platform x86_64-manylinux_2_28 \
  --constraint requirements/training-constraints.txt
lock dev edge server demo dev -- --python-platform x86_64-manylinux_2_28
