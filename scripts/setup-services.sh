#!/usr/bin/env bash
# Debian's chromium (browser tests) and PostgreSQL server binaries (database tests).
# The tests start their own throw-away servers; nothing is left running.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install ${need[*]} here; the tests that need them will skip with a reason." >&2
  exit 0
fi
echo "== installing Debian's ${need[*]} for the tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
