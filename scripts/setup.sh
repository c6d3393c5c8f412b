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

# The farmer page's in-browser runtime: onnxruntime-web from npm, pinned in package.json / package-lock.json.
# Only the three files the page loads are served (serving/static/vendor/, git-ignored).
vendor=serving/static/vendor
want_web=$(cat package-lock.json | sha256sum | cut -c1-16)
if [ "$(cat "$vendor/.installed" 2>/dev/null)" != "$want_web" ]; then
  if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Debian's npm (the farmer page's offline runtime comes from the npm registry)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  if command -v npm >/dev/null 2>&1; then
    echo "== installing onnxruntime-web (npm ci)"
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
    mkdir -p "$vendor"
    cp node_modules/onnxruntime-web/dist/{ort.wasm.min.js,ort-wasm-simd-threaded.mjs,ort-wasm-simd-threaded.wasm} "$vendor/"
    echo "$want_web" > "$vendor/.installed"
  else
    echo "npm is missing: the farmer page will work online only (no in-browser model)." >&2
  fi
fi
