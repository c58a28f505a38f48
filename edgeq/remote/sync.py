"""Content-addressed push: local files become ``W/blobs/<sha256>`` on the device, sent only when missing.

One remote command lists which blobs the device already holds intact (it re-hashes them, and
deletes any whose content no longer matches its name); only the others are uploaded, each under a
temporary name, then verified on the device with its own Python and renamed into place.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgeq.device.hashing import sha256_file
from edgeq.errors import DeviceError, InputError
from edgeq.remote.transport import Transport, run_python

BLOBS = "blobs"

# Device-side scripts: Python 3.8+, standard library only; each prints one JSON value.
# DEVICE_SHA256 is their common prelude: imports and sha256(path).
DEVICE_SHA256 = """
import hashlib, json, os, sys
def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
"""

_INTACT = (
    DEVICE_SHA256
    + """
setting, sub = sys.argv[1], sys.argv[2]
home = os.path.expanduser("~")
rest = setting[1:].lstrip("/") if setting.startswith("~") else setting
blobs = os.path.join(os.path.normpath(os.path.join(home, rest)), sub)
os.makedirs(blobs, exist_ok=True)
intact = []
for name in sys.argv[3:]:
    path = os.path.join(blobs, name)
    if os.path.isfile(path):
        if sha256(path) == name:
            intact.append(name)
        else:
            os.remove(path)
print(json.dumps({"home": home, "intact": intact}))
"""
)

_COMMIT = (
    DEVICE_SHA256
    + """
blobs, pairs, corrupt = sys.argv[1], sys.argv[2:], []
for temp, name in zip(pairs[::2], pairs[1::2]):
    temp = os.path.join(blobs, temp)
    if sha256(temp) == name:
        os.replace(temp, os.path.join(blobs, name))
    else:
        os.remove(temp)
        corrupt.append(name)
print(json.dumps(corrupt))
"""
)


@dataclass(frozen=True)
class SyncResult:
    """What a push did. ``remote`` maps each local file to its blob's path on the device."""

    remote: dict[Path, str]
    files_sent: int
    files_skipped: int
    bytes_sent: int
    seconds: float


def push_blobs(transport: Transport, files: Iterable[Path]) -> SyncResult:
    """Make every file present on the device as ``W/blobs/<sha256>``, uploading only what is missing."""
    started = time.monotonic()
    by_hash: dict[str, Path] = {}
    names: dict[Path, str] = {}
    for file in map(Path, files):
        if not file.is_file():
            raise InputError(f"{file}: file to push not found")
        names[file] = sha256_file(file)
        by_hash.setdefault(names[file], file)
    if not by_hash:
        return SyncResult({}, 0, 0, 0, time.monotonic() - started)
    # one round trip: which blobs are intact, and the device's $HOME (the work folder may start with ~)
    reply = run_python(transport, _INTACT, [transport.workdir_setting, BLOBS, *by_hash])
    transport.learn_home(reply["home"])
    intact = set(reply["intact"])
    blobs = transport.path(BLOBS)
    remote = {file: f"{blobs}/{name}" for file, name in names.items()}
    missing = {name: file for name, file in by_hash.items() if name not in intact}
    sent_bytes = 0
    pairs: list[str] = []
    for name, file in missing.items():
        temp = f".upload-{name}-{secrets.token_hex(4)}"
        sent_bytes += transport.put(file, f"{blobs}/{temp}")
        pairs += [temp, name]
    if pairs:
        corrupt = run_python(transport, _COMMIT, [blobs, *pairs])
        if corrupt:
            names = ", ".join(missing[name].name for name in corrupt)
            raise DeviceError(transport.label, f"upload arrived corrupted (SHA-256 mismatch on the device): {names}")
    return SyncResult(remote, len(missing), len(by_hash) - len(missing), sent_bytes, time.monotonic() - started)
