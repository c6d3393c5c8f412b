#!/usr/bin/env bash
# Create .venv and install pestid with every extra. Idempotent: it reinstalls
# only when pyproject.toml changes. pip's download cache (~/.cache/pip) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.pestid-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing pestid[train,serve,dev] (first run: a few minutes, torch is large)"
  .venv/bin/python -m pip install --upgrade pip
  .venv/bin/python -m pip install -e ".[train,serve,dev]"
  echo "$want" > "$stamp"
fi
