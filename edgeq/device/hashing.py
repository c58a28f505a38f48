"""Content addressing on the device: the sha256 of a file, and the blob store ``W/blobs/<sha256>`` the host
pushes into (which blobs are intact, commit uploads, unpack the agent from its blob).

Standard library only and self-contained (no imports from the package): the host runs this file with
``python -c`` before the agent is on the device, as ``hashing.py SUB-COMMAND ARGS``; it prints one JSON value.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from typing import Dict, List, Union


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def intact(setting: str, sub: str, names: List[str], home: str) -> Dict[str, Union[str, List[str]]]:
    """Which of the blobs ``names`` the store ``<setting>/<sub>`` holds intact; damaged ones are removed.
    ``setting`` is the work folder as configured (``~`` is ``home``); the answer also gives ``home``."""
    rest = setting[1:].lstrip("/") if setting.startswith("~") else setting
    blobs = os.path.join(os.path.normpath(os.path.join(home, rest)), sub)
    os.makedirs(blobs, exist_ok=True)
    found = []
    for name in names:
        path = os.path.join(blobs, name)
        if os.path.isfile(path):
            if sha256_file(path) == name:
                found.append(name)
            else:
                os.remove(path)
    return {"home": home, "intact": found}


def commit(blobs: str, pairs: List[str]) -> List[str]:
    """Rename each uploaded ``temp`` to its ``name`` if its content hashes to it (``pairs``: temp, name, ...);
    returns the names whose upload arrived damaged (their temp files are removed)."""
    corrupt = []
    for temp, name in zip(pairs[::2], pairs[1::2]):
        path = os.path.join(blobs, temp)
        if sha256_file(path) == name:
            os.replace(path, os.path.join(blobs, name))
        else:
            os.remove(path)
            corrupt.append(name)
    return corrupt


def unpack(workdir: str, digest: str, module: str) -> str:
    """Unpack the agent blob ``digest`` into ``W/agent/<digest>/`` unless that version is there:
    ``present``, ``unpacked``, or ``missing`` (no intact blob to unpack)."""
    final = os.path.join(workdir, "agent", digest)
    blob = os.path.join(workdir, "blobs", digest)
    if os.path.isfile(os.path.join(final, module, "__init__.py")):
        return "present"
    if not os.path.isfile(blob) or sha256_file(blob) != digest:
        return "missing"
    os.makedirs(os.path.dirname(final), exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(final))
    with tarfile.open(blob) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(stage, filter="data")
        else:
            archive.extractall(stage)
    try:
        os.rename(stage, final)
    except OSError:  # another run unpacked the same version first
        shutil.rmtree(stage, ignore_errors=True)
    return "unpacked"


def main(argv: List[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "intact":
        answer = intact(args[0], args[1], args[2:], os.path.expanduser("~"))  # type: object
    elif command == "commit":
        answer = commit(args[0], args[1:])
    elif command == "unpack":
        answer = unpack(args[0], args[1], args[2])
    else:
        sys.stderr.write(f"unknown sub-command {command!r}\n")
        return 2
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
