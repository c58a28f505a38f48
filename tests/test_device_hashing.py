"""The device's blob store (edgeq/device/hashing.py): intact blobs, verified commits, the agent's unpacking;
called directly and run as the host runs it, ``python -c <source>`` with nothing else on the path."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from edgeq.device import hashing
from edgeq.remote.sync import DEVICE_SCRIPT


def _blob(folder: Path, data: bytes) -> str:
    name = hashlib.sha256(data).hexdigest()
    (folder / name).write_bytes(data)
    return name


def test_intact_keeps_good_blobs_and_removes_damaged_ones(tmp_path: Path) -> None:
    blobs = tmp_path / "home" / "w" / "blobs"
    blobs.mkdir(parents=True)
    good, bad = _blob(blobs, b"good"), _blob(blobs, b"bad")
    (blobs / bad).write_bytes(b"bit rot")
    missing = hashlib.sha256(b"never sent").hexdigest()
    answer = hashing.intact("~/w", "blobs", [good, bad, missing], str(tmp_path / "home"))
    assert answer == {"home": str(tmp_path / "home"), "intact": [good]}
    assert sorted(p.name for p in blobs.iterdir()) == [good]


def test_commit_renames_verified_uploads_only(tmp_path: Path) -> None:
    (tmp_path / ".upload-a").write_bytes(b"a")
    (tmp_path / ".upload-b").write_bytes(b"b damaged")
    a, b = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    assert hashing.commit(str(tmp_path), [".upload-a", a, ".upload-b", b]) == [b]
    assert sorted(p.name for p in tmp_path.iterdir()) == [a]


def test_unpack_once_from_an_intact_blob(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("agent_mod/__init__.py")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"x=1"))
    (tmp_path / "blobs").mkdir()
    digest = _blob(tmp_path / "blobs", buffer.getvalue())
    assert hashing.unpack(str(tmp_path), "0" * 64, "agent_mod") == "missing"
    assert hashing.unpack(str(tmp_path), digest, "agent_mod") == "unpacked"
    assert (tmp_path / "agent" / digest / "agent_mod" / "__init__.py").read_text() == "x=1"
    assert hashing.unpack(str(tmp_path), digest, "agent_mod") == "present"


def test_runs_alone_as_python_c(tmp_path: Path) -> None:
    """No edgeq on the path, as on a device that has no agent yet; the answer is one JSON line."""
    (tmp_path / "blobs").mkdir()
    name = _blob(tmp_path / "blobs", b"payload")
    done = subprocess.run([sys.executable, "-I", "-c", DEVICE_SCRIPT, "intact", str(tmp_path), "blobs", name],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"home": str(Path.home()), "intact": [name]}
    bad = subprocess.run([sys.executable, "-I", "-c", DEVICE_SCRIPT, "frobnicate"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown sub-command" in bad.stderr
