#!/usr/bin/env bash
# The test command: set up, lint, type-check, check the layers, then run every test.
# pytest's exit code 5 ("no tests ran") is a failure here, as any non-zero code is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-services.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports  # the layer contracts in pyproject.toml (ARCHITECTURE.md)
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass." >&2
fi
exit "$code"
