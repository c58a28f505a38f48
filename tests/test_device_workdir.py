"""The device work folder under crashes and tampering, through the real agent (``python -m edgeq.device``):
switch and history as one step, ``current`` by its real path, leftovers swept, gc, private modes."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from edgeq.device.hashing import sha256_file
from edgeq.device.workdir import BLOB_GRACE, CRASH_ENV, CRASH_EXIT, LEFTOVER_AGE
from tests.test_device_ort import squeezenet_like

REPO = Path(__file__).resolve().parents[1]
OLD = time.time() - 2 * max(LEFTOVER_AGE, BLOB_GRACE)  # an mtime long enough ago: abandoned, out of grace


def agent(workdir: Path, *args: str, crash: str | None = None) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    command, rest = args[0], args[1:]
    done = subprocess.run([sys.executable, "-m", "edgeq.device", command, "--workdir", str(workdir), *rest], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, (json.loads(done.stdout.splitlines()[-1]) if done.stdout.strip() else {})


def ok(workdir: Path, *args: str) -> dict[str, Any]:
    code, payload = agent(workdir, *args)
    assert code == 0, payload
    return payload


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder with engines a, b, c built (FP32 on ONNX Runtime) from a pushed model blob; a then b activated."""
    folder = tmp_path_factory.mktemp("workdir")
    source = squeezenet_like(folder / "m.onnx", size=16, batch=1)
    work = folder / "w"
    model = work / "blobs" / sha256_file(str(source))
    model.parent.mkdir(parents=True)
    shutil.copy(source, model)
    os.utime(model, (OLD, OLD))
    for engine_id in ("a", "b", "c"):
        options = {"model": str(model), "quantization": "explicit", "precision": "fp32", "threads": 1}
        ok(work, "build", "--engine-id", engine_id, "--options", json.dumps(options), "--backend", "onnxruntime")
    ok(work, "activate", "--engine-id", "a", "--meta", '{"by": "first"}')
    ok(work, "activate", "--engine-id", "b", "--meta", '{"by": "second"}')
    return work


@pytest.fixture
def work(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "w"
    shutil.copytree(built, copy, symlinks=True)
    return copy


def state(work: Path) -> tuple[str, str, list[tuple[str, str]]]:
    status = ok(work, "status")
    return status["current"], status["previous"], [(h["action"], h["engine_id"]) for h in status["history"]]


@pytest.mark.parametrize(("point", "lands_on"), [("pending-written", "b"), ("switched", "c"), ("recorded", "c")])
def test_a_crash_at_any_step_of_an_activation_leaves_status_and_rollback_right(work: Path, point: str, lands_on: str) -> None:
    code, _ = agent(work, "activate", "--engine-id", "c", "--meta", '{"by": "third"}', crash=point)
    assert code == CRASH_EXIT  # the agent died at that step, as a power cut would
    current, previous, history = state(work)
    assert os.path.realpath(work / "current") == str(work / "engines" / lands_on)
    if lands_on == "c":  # the switch happened: recorded once, with the meta it was made with
        assert (current, previous) == ("c", "b")
        assert history == [("activate", "a"), ("activate", "b"), ("activate", "c")]
        assert ok(work, "status")["history"][-1]["meta"] == {"by": "third"}
        assert ok(work, "rollback")["current"] == "b"
    else:  # it did not: nothing recorded
        assert (current, previous) == ("b", "a")
        assert history == [("activate", "a"), ("activate", "b")]
        assert ok(work, "rollback")["current"] == "a"
    assert not (work / "pending.json").exists()


@pytest.mark.parametrize("point", ["pending-written", "switched", "recorded"])
def test_a_crash_during_a_rollback_leaves_status_right(work: Path, point: str) -> None:
    code, _ = agent(work, "rollback", crash=point)
    assert code == CRASH_EXIT
    current, previous, _ = state(work)
    assert (current, previous) == (("b", "a") if point == "pending-written" else ("a", None))


def test_a_switch_without_a_history_entry_is_recorded(work: Path) -> None:
    """What an older agent left when it died between the switch and the history write."""
    tmp = work / ".current-x"
    tmp.symlink_to(os.path.join("engines", "c"))
    os.replace(tmp, work / "current")
    current, previous, history = state(work)
    assert (current, previous) == ("c", "b")  # not a, two engines back
    assert history[-1] == ("activate", "c")
    assert "without a history entry" in ok(work, "status")["history"][-1]["meta"]["recovered"]
    assert ok(work, "rollback")["current"] == "b"


def test_current_pointing_outside_is_repaired_from_the_history(work: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "engines" / "b"  # same name as the active engine, outside the work folder
    shutil.copytree(work / "engines" / "b", outside)
    (work / "current").unlink()
    (work / "current").symlink_to(outside)
    status = ok(work, "status")
    assert status["current"] == "b" and status["previous"] == "a"
    assert os.path.realpath(work / "current") == str(work / "engines" / "b")
    assert any("not a built engine" in note and str(outside) in note for note in status["notes"])
    assert outside.is_dir()  # the foreign folder is left alone


def test_current_pointing_outside_with_no_history_is_refused(work: Path, tmp_path: Path) -> None:
    (work / "history.json").unlink()
    outside = tmp_path / "x" / "b"
    shutil.copytree(work / "engines" / "b", outside)
    (work / "current").unlink()
    (work / "current").symlink_to(outside)
    code, payload = agent(work, "status")
    assert code == 1 and payload["kind"] == "conflict" and str(outside) in payload["error"]
    code, payload = agent(work, "smoke", "--data", str(tmp_path / "none.npz"))
    assert code == 1 and payload["kind"] == "conflict"
    assert ok(work, "activate", "--engine-id", "c")["changed"] is True  # an explicit activation replaces it
    assert os.path.realpath(work / "current") == str(work / "engines" / "c")


def test_current_that_is_not_a_link_is_refused_not_replaced(work: Path) -> None:
    (work / "current").unlink()
    (work / "current").mkdir()
    (work / "current" / "keep.txt").write_text("user data")
    for args in (("status",), ("activate", "--engine-id", "c")):
        code, payload = agent(work, *args)
        assert code == 1 and payload["kind"] == "conflict" and "not a symlink" in payload["error"]
    assert (work / "current" / "keep.txt").read_text() == "user data"


def _leave_leftovers(work: Path) -> dict[str, Path]:
    """What crashed runs leave: a partial upload, a staging folder, temp files; all old enough to be abandoned."""
    found = {
        "upload": work / "blobs" / f".upload-{'0' * 64}-abcd",
        "staging": work / "engines" / ".staging-d-xyz",
        "export": work / "engines" / ".export-1234.tar",
        "tmp": work / ".tmp-abc",
        "unpack": work / "agent" / ".unpack-1",
    }
    for name, path in found.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in ("staging", "unpack"):
            path.mkdir()
            (path / "engine.bin").write_bytes(b"\0" * 1000)
        else:
            path.write_bytes(b"\0" * 1000)
        os.utime(path, (OLD, OLD))
    return found


def test_leftovers_of_crashed_runs_are_swept_on_the_next_run(work: Path) -> None:
    leftovers = _leave_leftovers(work)
    young = work / "blobs" / ".upload-young"
    young.write_bytes(b"x")  # an upload in progress right now
    live_staging = work / "engines" / ".staging-e-live"
    live_staging.mkdir()
    (live_staging / ".staging.lock").write_text("")
    os.utime(live_staging, (OLD, OLD))
    open_upload = work / "blobs" / ".upload-open"
    open_upload.write_bytes(b"x")
    os.utime(open_upload, (OLD, OLD))
    with open(live_staging / ".staging.lock") as lock, open(open_upload, "rb"):
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build still running holds its staging folder's lock
        ok(work, "status")
    assert not any(path.exists() for path in leftovers.values())
    assert young.exists() and live_staging.exists() and open_upload.exists()
    ok(work, "status")
    assert not live_staging.exists() and not open_upload.exists()  # lock released, file closed: abandoned now


def test_gc_keeps_current_and_previous_and_frees_the_rest(work: Path, tmp_path: Path) -> None:
    blobs = work / "blobs"
    model_blob = blobs / Path(json.loads((work / "engines" / "b" / "build.json").read_text())["options"]["model"]).name
    os.utime(model_blob, (OLD, OLD))  # old, but the kept engines were built from it
    old_blob, young_blob = blobs / ("2" * 64), blobs / ("3" * 64)
    old_blob.write_bytes(b"\0" * 5000)
    young_blob.write_bytes(b"\0" * 5000)
    os.utime(old_blob, (OLD, OLD))
    old_blob.chmod(0o644)
    ok(work, "activate", "--engine-id", "c")  # current c, previous b: a is the only removable engine
    leftovers = _leave_leftovers(work)
    report = ok(work, "gc", "--keep", "0")
    assert report["removed"] == ["a"] and sorted(report["kept"]) == ["b", "c"]
    assert sorted(os.listdir(work / "engines")) == ["b", "c"]
    assert report["blobs_removed"] == [old_blob.name] and not old_blob.exists()
    assert young_blob.exists()  # pushed or used within the grace period
    assert model_blob.exists()
    assert sorted(report["swept"]) == sorted(str(p.relative_to(work)) for p in leftovers.values())
    assert report["bytes_freed"] >= 5000 + 5 * 1000
    assert stat.S_IMODE(young_blob.stat().st_mode) == 0o600
    report = ok(work, "gc", "--keep", "0", "--blob-grace", "0")
    assert young_blob.name in report["blobs_removed"] and report["removed"] == []


def test_used_blobs_are_kept_by_gc_and_the_work_folder_is_private(work: Path) -> None:
    data = work / "blobs" / ("4" * 64)
    data.write_bytes(b"data")
    os.utime(data, (OLD, OLD))
    os.chmod(work, 0o755)
    agent(work, "smoke", "--engine-id", "b", "--data", str(data))  # fails (not an .npz) but uses the blob
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert stat.S_IMODE((work / "blobs").stat().st_mode) == 0o700
    assert data.name not in ok(work, "gc", "--keep", "0")["blobs_removed"]


def test_an_engine_archive_naming_one_file_twice_is_refused(work: Path, tmp_path: Path) -> None:
    archive = tmp_path / "e.tar"
    with tarfile.open(archive, "w") as out:
        for folder in ("x", "y"):
            (tmp_path / folder).mkdir()
            (tmp_path / folder / "build.json").write_text("{}")
            out.add(tmp_path / folder / "build.json", arcname=f"{folder}/build.json")
    code, payload = agent(work, "import", "--engine-id", "z", "--archive", str(archive))
    assert code == 1 and payload["kind"] == "invalid_input" and "twice" in payload["error"]
    assert not (work / "engines" / "z").exists()
