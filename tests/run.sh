#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian/Ubuntu machine, then runs them.
# The loopback test devices need root (sshd on 127.0.0.N:22) and openssh-server: tests/devices/provision.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

as_root bash tests/devices/provision.sh
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
# pytest exits 5 when it collected no test: that is a failure here too.
python3 -m pytest -q -p no:cacheprovider "$@"
