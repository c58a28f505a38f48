#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian/Ubuntu machine, then runs them.
# The loopback test devices need root (sshd on 127.0.0.N:22) and openssh-server: tests/devices/provision.sh.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -m "not ssh and not slow"` for the inner loop.
# ruff and mypy run first (seconds, mypy caches in .mypy_cache): a finding fails the run before the tests start.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

bash install.sh --test
as_root bash tests/devices/provision.sh
.venv/bin/python -m ruff check --quiet .
.venv/bin/python -m mypy
# pytest exits 5 when it collected no test: that is a failure here too.
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
