"""Content-addressed push: local files become ``W/blobs/<sha256>`` on the device, sent only when missing.

One remote command lists which blobs the device already holds intact (it re-hashes them, and
deletes any whose content no longer matches its name); only the others are uploaded, each under a
temporary name, then verified on the device with its own Python and renamed into place. Both run
:mod:`edgeq.device.hashing` there.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgeq.device import hashing
from edgeq.device.hashing import sha256_file
from edgeq.errors import DeviceError, InputError
from edgeq.remote.transport import Transport, run_python

BLOBS = "blobs"
# edgeq/device/hashing.py, run as `python -c` (the agent may not be on the device yet): standard library only
DEVICE_SCRIPT = Path(hashing.__file__).read_text(encoding="utf-8")


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
    reply = run_python(transport, DEVICE_SCRIPT, ["intact", transport.workdir_setting, BLOBS, *by_hash])
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
        corrupt = run_python(transport, DEVICE_SCRIPT, ["commit", blobs, *pairs])
        if corrupt:
            damaged = ", ".join(missing[name].name for name in corrupt)
            raise DeviceError(transport.label, f"upload arrived corrupted (SHA-256 mismatch on the device): {damaged}")
    return SyncResult(remote, len(missing), len(by_hash) - len(missing), sent_bytes, time.monotonic() - started)
