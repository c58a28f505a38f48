#!/usr/bin/env bash
# Installs edgeq into ./.venv on a fresh Debian/Ubuntu machine; idempotent, quick when already done.
#   bash install.sh          edgeq and its dependencies
#   bash install.sh --test   the same plus what the tests need (pytest, linters, field models)
# System packages (python3, python3-venv) are installed with apt-get when missing: as root, or through sudo.
set -euo pipefail
cd "$(dirname "$0")"

extras=""
case "${1:-}" in
    "") ;;
    --test) extras="[test]" ;;
    *) echo "install.sh: unknown option '$1' (expected nothing or --test)" >&2; exit 2 ;;
esac

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else echo "install.sh: '$*' needs root: run it as root or install sudo" >&2; exit 1; fi
}

missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install.sh: installing ${missing[*]} with apt-get"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "install.sh: edgeq needs Python >= 3.10, found $(python3 -V 2>&1)" >&2
    exit 1
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
echo "install.sh: ready: .venv/bin/edgeq (or '. .venv/bin/activate' for plain 'edgeq')"
