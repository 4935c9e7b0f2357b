#!/usr/bin/env bash
# Install everything the tests need, then run them all. Usage: ./tests/run.sh [pytest args]
#
# Works with Debian's and Ubuntu's system python3 (PEP 668): the Python packages go into a
# virtual environment in .venv, never into the system. Mosquitto and its command-line clients
# (the tests start their own broker on a free port, and drive it the way users do, with
# mosquitto_pub/mosquitto_sub) and chromium (the status page is checked in a real headless
# browser) come from apt-get when they are missing; the Node test clients (the @ruvnet/rvagent
# MCP server, playwright-core) from npm into tests/js/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null || missing+=(nodejs npm)
command -v systemd-analyze >/dev/null || [ -x /usr/bin/systemd-analyze ] || missing+=(systemd)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing+=(iproute2)
[ -x /usr/bin/rustc ] || missing+=(rustc)  # the Rust plugins are rebuilt with Debian's rustc (plugins/build.sh)
[ -d /usr/lib/rustlib/wasm32-unknown-unknown ] || missing+=(libstd-rust-dev-wasm32)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]} with apt-get"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    echo "tests/run.sh: python3 cannot make a virtual environment; installing python3-venv with apt-get"
    rm -rf .venv
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
(cd tests/js && npm install --no-audit --no-fund --loglevel=error >/dev/null)
# the AssemblyScript compiler, at the version its lock file pins (plugins/build.sh rebuilds the AS plugins)
(cd plugins/pdk/assemblyscript && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
# In parallel (pytest-xdist): every test picks its own free ports and temporary files. Three workers
# per core, because the suite waits far more than it computes (brokers, subprocesses, a 70 s outage,
# a fresh virtual environment): on 2 cores, 6 workers took the wall time from 4:24 (2 workers) to
# about 2:10. worksteal hands a worker that is done the queued tests of one still busy.
workers=$(( $(nproc) * 3 ))
exec .venv/bin/python -m pytest -n "$workers" --dist worksteal "$@"
