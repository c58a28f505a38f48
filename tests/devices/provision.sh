#!/usr/bin/env bash
# Prepare this machine for the loopback SSH test fleet. Idempotent; run as root; fast when done.
#   - openssh-server (sshd), nftables (for the network-drop tests), python3-venv
#   - on x86_64, qemu-user: ONNX Runtime under an AVX2 CPU without VNNI (the saturating INT8 kernels, and
#     calibration that must give the same bytes as on this CPU)
#   - the non-root test user that logs in to the fleet (EDGEQ_TEST_USER, default edgeq-dev)
#   - the "device Python": a world-readable venv with numpy and onnxruntime (EDGEQ_DEVICE_PYTHON,
#     default /opt/edgeq-device-python) playing the Jetson's own Python with a backend.
set -euo pipefail

user=${EDGEQ_TEST_USER:-edgeq-dev}
venv=${EDGEQ_DEVICE_PYTHON:-/opt/edgeq-device-python}

if [ "$(id -u)" -ne 0 ]; then
    echo "provision.sh: must run as root (found uid $(id -u))" >&2
    exit 1
fi

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
[ "$(uname -m)" != x86_64 ] || command -v qemu-x86_64 >/dev/null 2>&1 || missing+=(qemu-user)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "provision.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p /run/sshd

if ! id -u "$user" >/dev/null 2>&1; then
    useradd -m -s /bin/bash "$user"
fi
usermod -p '*' "$user"  # useradd leaves the account locked; sshd without PAM refuses locked accounts

if ! "$venv/bin/python" -c 'import numpy, onnxruntime' >/dev/null 2>&1; then
    echo "provision.sh: creating the device Python in $venv"
    /usr/bin/python3 -m venv --clear "$venv"
    log=$(mktemp)
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check numpy onnxruntime >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    rm -f "$log"
    chmod -R a+rX "$venv"
fi
echo "provision.sh: ready (user $user, device Python $venv/bin/python)"
