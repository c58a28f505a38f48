"""The device agent as a real subprocess (``python -m edgeq.device``) on small ONNX models, onnxruntime backend:
build -> evaluate -> bench -> activate -> status -> smoke -> rollback -> gc, failures and bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeq.device.report import BenchReport, BuildReport, EvaluateReport, SmokeReport, StatusReport
from tests.test_device_ort import images, quantize_qdq, run_reference, squeezenet_like

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


def agent(*args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "edgeq.device", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    lines = done.stdout.splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    return done.returncode, json.loads(lines[0])


def ok(*args: str) -> dict[str, Any]:
    code, payload = agent(*args)
    assert code == 0, payload
    return payload


def failed(kind: str, *args: str) -> str:
    code, payload = agent(*args)
    assert code != 0 and set(payload) == {"error", "kind"} and payload["kind"] == kind, payload
    return payload["error"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    fp32 = squeezenet_like(folder / "fp32.onnx", size=SIZE, batch="N")
    x = images(12, size=SIZE, seed=3)
    np.savez(folder / "eval.npz", input=x)
    np.savez(folder / "smoke.npz", x=x[:5], expected=run_reference(fp32, x[:5]))
    (folder / "broken.onnx").write_bytes(b"not a model")
    return {"fp32": fp32, "qdq": quantize_qdq(fp32, folder / "qdq.onnx", images(8, size=SIZE)),
            "eval": folder / "eval.npz", "smoke": folder / "smoke.npz", "broken": folder / "broken.onnx",
            "workdir": folder / "work"}


def build(workdir: Path | str, engine_id: str, *extra: str, backend: str = "onnxruntime", **options: Any) -> list[str]:
    """The agent's `build` command line: ``options`` become the --options JSON object."""
    return ["build", "--workdir", str(workdir), "--engine-id", engine_id, "--backend", backend,
            "--options", json.dumps({"quantization": "explicit", **options}), *extra]


def build_args(files: dict[str, Path], engine_id: str, *extra: str, workdir: str = "", **options: Any) -> list[str]:
    return build(workdir or files["workdir"], engine_id, *extra, model=str(files["fp32"]), qdq=str(files["qdq"]), threads=1,
                 **options)


@pytest.mark.slow
def test_lifecycle(files: dict[str, Path]) -> None:
    work = str(files["workdir"])
    meta = {"recipe": "squeezenet-like", "requested_by": "test"}
    built = BuildReport.from_dict(ok(*build_args(files, "a1", "--meta", json.dumps(meta), precision="int8")))
    folder = files["workdir"] / "engines" / "a1"
    assert built.backend == "onnxruntime" and built.meta == meta and built.options.quantization == "explicit"
    engine_bytes = (folder / built.engine.artifact.path).read_bytes()
    assert hashlib.sha256(engine_bytes).hexdigest() == built.engine.artifact.sha256
    assert BuildReport.from_dict(json.loads((folder / "build.json").read_text())) == built
    assert any(layer.layer_type == "QLinearConv" for layer in built.engine.layers)
    assert built.inputs == {"input": [None, 3, SIZE, SIZE]}
    assert not (files["workdir"] / "current").exists()

    evaluated = EvaluateReport.from_dict(ok("evaluate", "--workdir", work, "--engine-id", "a1",
                                            "--data", str(files["eval"]), "--batch", "5"))
    with np.load(folder / evaluated.scores_int8) as a, np.load(folder / evaluated.scores_fp32) as b:
        assert a.files == b.files == ["logits"]
        int8, fp32 = a["logits"], b["logits"]
    assert evaluated.samples == 12 and int8.shape == fp32.shape == (12, 10)
    x = np.load(files["eval"])["input"]
    np.testing.assert_allclose(fp32, run_reference(files["fp32"], x), rtol=1e-4, atol=1e-4)
    assert evaluated.comparison.cosine > 0.95
    assert evaluated.comparison.top1_agreement == float(np.mean(int8.argmax(1) == fp32.argmax(1)))

    benched = BenchReport.from_dict(ok("bench", "--workdir", work, "--engine-id", "a1", "--warmup", "2",
                                       "--iterations", "15", "--threads", "1"))
    for stats in (benched.int8, benched.fp32):
        assert stats.iterations == 15 and stats.batch == 1
        assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert benched.speedup == pytest.approx(benched.fp32.median_ms / benched.int8.median_ms)

    ok("activate", "--workdir", work, "--engine-id", "a1", "--meta", '{"by": "deploy"}')
    assert os.readlink(files["workdir"] / "current") == os.path.join("engines", "a1")
    b2 = ok(*build_args(files, "b2", precision="fp32", builder_optimization_level=2))
    # the option reaches the device and is recorded; onnxruntime says it does not use it
    assert b2["options"]["builder_optimization_level"] == 2
    assert any("builder_optimization_level" in w for w in b2["engine"]["warnings"])
    assert ok("activate", "--workdir", work, "--engine-id", "b2")["previous"] == "a1"
    status = StatusReport.from_dict(ok("status", "--workdir", work))
    assert status.current == "b2" and status.previous == "a1" and status.build is not None
    assert status.build.options.precision == "fp32"
    assert [(h.action, h.engine_id, h.previous) for h in status.history] == [
        ("activate", "a1", None), ("activate", "b2", "a1")]
    assert status.history[0].meta == {"by": "deploy"}

    # b2 is the FP32 model itself: it reproduces the host's FP32 outputs exactly.
    smoked = SmokeReport.from_dict(ok("smoke", "--workdir", work, "--data", str(files["smoke"]),
                                      "--min-agreement", "1.0", "--min-cosine", "0.9999"))
    assert smoked.engine_id == "b2" and smoked.passed and smoked.samples == 5
    assert smoked.comparison.top1_agreement == 1.0
    strict = ok("smoke", "--workdir", work, "--engine-id", "a1", "--data", str(files["smoke"]),
                "--min-cosine", "1.0000001")
    assert strict["passed"] is False and strict["engine_id"] == "a1"

    rolled = ok("rollback", "--workdir", work)
    assert rolled["current"] == "a1" and rolled["previous"] == "b2"
    assert os.readlink(files["workdir"] / "current") == os.path.join("engines", "a1")
    failed("not_found", "rollback", "--workdir", work)

    # A failed build leaves no folder and does not move current.
    failed("build_failed", *build(work, "c3", model=str(files["broken"]), precision="fp32"))
    assert sorted(os.listdir(files["workdir"] / "engines")) == ["a1", "b2"]
    assert ok("status", "--workdir", work)["current"] == "a1"
    failed("conflict", *build_args(files, "a1", precision="int8"))

    ok(*build_args(files, "d4", precision="fp32"))
    ok("activate", "--workdir", work, "--engine-id", "d4")
    collected = ok("gc", "--workdir", work, "--keep", "0")
    assert collected["removed"] == ["b2"] and sorted(os.listdir(files["workdir"] / "engines")) == ["a1", "d4"]


@pytest.mark.slow
def test_bad_inputs_give_json_errors(files: dict[str, Path], tmp_path: Path) -> None:
    work = str(tmp_path / "w")
    missing = str(tmp_path / "missing.onnx")
    failed("usage", "build", "--workdir", work)
    failed("usage", "frobnicate")
    failed("usage", *build_args(files, "x", precision="int8", shapes={"input": [1, "A"]}))
    failed("not_found", *build(work, "x", model=missing, precision="fp32"))
    failed("not_found", *build_args(files, "x", precision="int8",
                                    cache=str(tmp_path / "none.cache")))
    for bad_id in ("../evil", "current", ".staging-x"):
        failed("invalid_input", *build(work, bad_id, model=str(files["fp32"]), precision="fp32"))
    failed("invalid_input", *build(work, "x", "--meta", "[1, 2]", model=str(files["fp32"]), precision="fp32"))
    failed("invalid_input", *build(work, "x", model=str(files["fp32"]), precision="int8"))
    failed("unsupported", *build_args(files, "x", precision="fp16"))
    failed("unsupported", *build(work, "x", backend="tensorrt", model=str(files["fp32"]), precision="fp32"))
    # build options the agent cannot apply are refused, never dropped
    assert "frobnicate" in failed("usage", *build(work, "x", model=str(files["fp32"]), precision="fp32", frobnicate=1))
    assert "builder_optimization_level" in failed("usage", *build(work, "x", model=str(files["fp32"]), precision="fp32",
                                                                  builder_optimization_level=9))
    failed("usage", *build(work, "x", "--options", "not json", model=str(files["fp32"]), precision="fp32"))
    failed("not_found", "evaluate", "--workdir", work, "--engine-id", "nope", "--data", str(files["eval"]))
    failed("not_found", "smoke", "--workdir", work, "--data", str(files["smoke"]))
    failed("not_found", "activate", "--workdir", work, "--engine-id", "nope")
    assert not os.listdir(tmp_path / "w" / "engines")
    ok(*build_args(files, "e5", precision="fp32", workdir=work))
    failed("invalid_input", "evaluate", "--workdir", work, "--engine-id", "e5", "--data", str(files["broken"]))
    np.savez(tmp_path / "wrong.npz", images=np.zeros((2, 3, SIZE, SIZE), np.float32))
    failed("invalid_input", "evaluate", "--workdir", work, "--engine-id", "e5", "--data", str(tmp_path / "wrong.npz"))
    failed("invalid_input", "smoke", "--workdir", work, "--engine-id", "e5", "--data", str(files["eval"]))
    failed("invalid_input", "gc", "--workdir", work, "--keep", "-1")
