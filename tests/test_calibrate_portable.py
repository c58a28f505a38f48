"""The calibration's numbers do not depend on the x86 CPU: the same recipe gives the same statistics, ranges,
calibration cache and predicted accuracy, byte for byte, on an AVX-512 machine and under qemu's Haswell model (AVX2,
no AVX-512, no VNNI), where ONNX Runtime's MLAS and numpy take their AVX2 kernels, the fold counts with ``bincount``
(not the SIMD sort) and the INT8 prediction runs on u8 x u8 kernels (not u8 x s8).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from edgeq.calibrate.activations import session
from edgeq.calibrate.portable import log, without_cpu_dependent_ops
from edgeq.calibrate.ranges import entropy_threshold_bin, kl_divergences
from tests.calibrate_nets import images, wide_state_net
from tests.cli import ENV, run_edgeq

ROOT = Path(__file__).resolve().parents[1]
TARGET = "orin-nano-jp6.2"


AVX2 = pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("qemu-x86_64") is None,
                          reason="needs qemu-x86_64 (Debian: qemu-user, installed by tests/devices/provision.sh) on x86_64")
KL_DIGEST = """
import hashlib, numpy as np
from edgeq.calibrate.portable import log
from edgeq.calibrate.ranges import kl_divergences
rng = np.random.default_rng(7)
digest = hashlib.sha256(log(np.ldexp(rng.uniform(0.5, 1.0, 100_000), rng.integers(-1000, 1000, 100_000))).tobytes())
for shape in ("normal", "laplace", "relu", "sparse"):
    for size in (10**3, 10**5):
        values = {"normal": rng.normal, "laplace": rng.laplace, "relu": lambda size: np.maximum(rng.normal(size=size), 0),
                  "sparse": lambda size: (rng.integers(0, 40, size) ** 3).astype(float)}[shape](size=size)
        hist = np.histogram(np.abs(values), 2048, (0, np.abs(values).max() * 1.01))[0]
        digest.update(kl_divergences(hist)[1].tobytes())
print(digest.hexdigest())
"""


def _avx2(*args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` under qemu's Haswell CPU (AVX2, no AVX-512), with this checkout on the path."""
    return subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, *args], cwd=ROOT,
                          env={**os.environ, **ENV, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)


def _calibrate_avx2(recipe: Path, out: Path, method: str) -> subprocess.CompletedProcess[str]:
    return _avx2("-m", "edgeq", "calibrate", str(recipe), "--target", TARGET, "--method", method, "--out", str(out))


def _state_recipe(folder: Path, size: int = 32) -> Path:
    """:func:`wide_state_net` with sequences of 4 samples: its state input is calibrated on FP32's fed-back outputs."""
    folder.mkdir(parents=True)
    onnx.save(wide_state_net(size=size), folder / "model.onnx")
    rng = np.random.default_rng(0)
    np.savez(folder / "cal.npz", data=images(rng, 24, size))
    np.savez(folder / "val.npz", data=images(rng, 8, size), labels=rng.integers(0, 4, 8))
    state = ["N", 32, size // 2, size // 2]
    recipe = {
        "name": "wide-state",
        "model": "model.onnx",
        "inputs": [{"name": "data", "shape": ["N", 3, size, size]}, {"name": "h", "shape": state, "state": "h_out"}],
        "calibration": {"path": "cal.npz", "batch_size": 8, "sequence_length": 4},
        "validation": {"path": "val.npz", "sequence_length": 4},
        "budget": {"accuracy_drop": 100.0},
    }
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return folder / "recipe.yaml"


def _statistics(recipe: Path) -> bytes:
    """The calibration store's one statistics entry (histograms and extremes of every tensor)."""
    (entry,) = (recipe.parent / "edgeq-out").glob("*/.store/*/statistics.npz")
    return entry.read_bytes()


@pytest.mark.slow
@AVX2
def test_kl_divergences_and_logs_are_the_same_bits_on_an_avx2_cpu() -> None:
    """numpy's own np.log differs in the last bit between AVX-512 and AVX2 CPUs on some of these inputs."""
    native = subprocess.run([sys.executable, "-c", KL_DIGEST], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=300)
    emulated = _avx2("-c", KL_DIGEST)
    assert native.returncode == 0, native.stderr
    assert emulated.returncode == 0, emulated.stderr[-3000:]
    assert native.stdout.split()[-1] == emulated.stdout.split()[-1]


@pytest.mark.slow
@AVX2
def test_statistics_ranges_cache_and_prediction_are_the_same_on_an_avx2_cpu(tmp_path: Path) -> None:
    here = _state_recipe(tmp_path / "here")
    there = tmp_path / "there"
    shutil.copytree(here.parent, there)  # a store of its own: the AVX2 run measures everything again
    for method in ("entropy", "mse"):  # the second run takes the statistics from the store: only the search runs
        native = run_edgeq("calibrate", here, "--target", TARGET, "--method", method, "--out", tmp_path / f"here-{method}")
        emulated = _calibrate_avx2(there / "recipe.yaml", tmp_path / f"there-{method}", method)
        assert native.code in (0, 1), native.stderr
        assert emulated.returncode in (0, 1), emulated.stderr[-3000:]
        for name in ("ranges.json", "calibration.cache", "model.qdq.onnx"):
            mine, theirs = (tmp_path / f"{side}-{method}" / name for side in ("here", "there"))
            assert mine.read_bytes() == theirs.read_bytes(), f"{method}: {name} differs on the AVX2 CPU"
        mine, theirs = (json.loads((tmp_path / f"{side}-{method}" / "report.json").read_text()) for side in ("here", "there"))
        assert "u8 x u8" in theirs["prediction_kernels"]
        assert mine["accuracy"] == theirs["accuracy"], f"{method}: the predicted accuracy differs on the AVX2 CPU"
    assert _statistics(here) == _statistics(there / "recipe.yaml")


def test_portable_log_is_within_3_ulp_of_the_c_library_and_keeps_its_special_values() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([np.ldexp(rng.uniform(0.5, 1.0, 200_000), rng.integers(-1074, 1024, 200_000)),
                        rng.uniform(0.5, 2.0, 200_000), np.arange(1.0, 5000.0), [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]])
    want = np.array([math.log(v) for v in x])
    got = log(x)
    assert np.all(np.abs(got - want) <= 3 * np.spacing(np.abs(want))), "more than 3 ulp from math.log"
    assert log(1.0) == 0.0 and log(2.0) == math.log(2.0)
    special = log(np.array([0.0, np.inf, -1.0, np.nan, -np.inf]))
    assert special[0] == -np.inf and special[1] == np.inf and np.isnan(special[2:]).all()


def test_kl_search_picks_the_last_of_tied_candidates_and_handles_degenerate_histograms() -> None:
    """Spikes inside the first start_bin bins: every candidate keeps all the mass, with the same divergence."""
    hist = np.zeros(2048, np.int64)
    hist[[1, 5, 60]] = [100, 40, 7]
    candidates, divergence = kl_divergences(hist)
    assert candidates[0] == 128 and candidates[-1] == 2048
    best = divergence.min()
    assert entropy_threshold_bin(hist) == candidates[np.nonzero(divergence == best)[0][-1]]
    only_zeros = np.zeros(2048, np.int64)
    only_zeros[0] = 10
    assert entropy_threshold_bin(only_zeros) == 2048
    assert entropy_threshold_bin(np.ones(100, np.int64)) == 100


def _normaliser(op: str, opset: int, axis: int | None, rank_known: bool = True) -> onnx.ModelProto:
    attrs = {} if axis is None else {"axis": axis}
    shape = [2, 5, 7, 3] if rank_known else None
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], "n",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(("op", "opset", "axis"), [("Softmax", 11, None), ("Softmax", 11, 2), ("LogSoftmax", 12, -2),
                                                   ("Softmax", 13, None), ("Softmax", 13, 1), ("LogSoftmax", 17, 0),
                                                   ("Softmax", 18, -3), ("LogSoftmax", 21, 3)])
def test_softmax_written_out_in_portable_ops_gives_what_onnx_runtime_gives(op: str, opset: int, axis: int | None) -> None:
    """Before opset 13 the ops normalise over every axis from ``axis`` on (a flattened row), from 13 over ``axis``.
    Shapes are declared here, as shape inference would find them, so ONNX Runtime checks both graphs' outputs."""
    original = _normaliser(op, opset, axis)
    rewritten = without_cpu_dependent_ops(original)
    assert op not in [n.op_type for n in rewritten.graph.node] and op in [n.op_type for n in original.graph.node]
    onnx.checker.check_model(rewritten, full_check=True)
    x = (np.random.default_rng(opset).standard_normal((2, 5, 7, 3)) * 4).astype(np.float32)
    want, got = (session(m).run(None, {"x": x})[0] for m in (original, rewritten))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    relu = _normaliser("Relu", opset, None)
    assert without_cpu_dependent_ops(relu) is relu


def test_softmax_of_an_input_whose_rank_is_unknown_is_written_out_too() -> None:
    for opset, ops in ((11, ["Flatten", "ReduceMax", "Sub", "Exp", "ReduceSum", "Div", "Shape", "Reshape"]),
                       (13, ["ReduceMax", "Sub", "Exp", "ReduceSum", "Div"])):
        model = _normaliser("Softmax", opset, None, rank_known=False)
        rewritten = without_cpu_dependent_ops(model)
        assert [n.op_type for n in rewritten.graph.node] == ops
        x = np.random.default_rng(opset).standard_normal((2, 5, 7, 3)).astype(np.float32)
        np.testing.assert_allclose(session(rewritten).run(None, {"x": x})[0], session(model).run(None, {"x": x})[0], rtol=2e-6,
                                   atol=2e-6)


def test_portable_sessions_run_without_the_nchwc_layout() -> None:
    """ONNX Runtime's NCHWc kernels change a wide conv net's bits here (x86: they block channels by the vector width);
    a portable session gives the bits of level EXTENDED, which has no NCHWc, so the transformer is really off."""
    import onnxruntime as ort

    from tests.calibrate_nets import NetBuilder

    b = NetBuilder(3)
    x = b.conv("data", 3, 32, 3)
    for _ in range(3):
        x = b.conv(x, 32, 32, 3)
    model = b.model("data", b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1), ["N", 3, 24, 24], ["N", 32])
    data = images(np.random.default_rng(1), 4, 24)

    def level(optimization: ort.GraphOptimizationLevel) -> bytes:
        options = ort.SessionOptions()
        options.graph_optimization_level = optimization
        sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return sess.run(None, {"data": data})[0].tobytes()

    portable = session(model, portable=True).run(None, {"data": data})[0].tobytes()
    assert portable == level(ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    if platform.machine() == "x86_64":  # MLAS has NCHWc kernels on x86 only
        assert portable != level(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)


def test_onnx_runtime_knows_the_cpu_dependent_optimizers_by_these_names(tmp_path: Path) -> None:
    """ONNX Runtime ignores a disabled optimizer it does not know: each name must remove what it names from the
    optimized graph of a net with a residual Conv + Add (the NCHWc layout, and FusedConv with a sum input)."""
    import onnxruntime as ort

    from edgeq.calibrate.activations import CPU_DEPENDENT_OPTIMIZERS
    from tests.calibrate_nets import NetBuilder

    b = NetBuilder(5)
    x = b.conv("data", 3, 32, 3)
    x = b.node("Relu", [b.node("Add", [b.conv(x, 32, 32, 3, relu=False), x])])
    model = b.model("data", b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1), ["N", 3, 16, 16], ["N", 32])

    def optimized(disabled: list[str]) -> list[onnx.NodeProto]:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        return list(onnx.load(tmp_path / "optimized.onnx").graph.node)

    def summed(nodes: list[onnx.NodeProto]) -> bool:
        return any(n.op_type == "FusedConv" and len([i for i in n.input if i]) == 4 for n in nodes)

    assert set(CPU_DEPENDENT_OPTIMIZERS) == {"NchwcTransformer", "ConvAddActivationFusion"}
    portable = optimized(list(CPU_DEPENDENT_OPTIMIZERS))
    assert not any(n.domain == "com.microsoft.nchwc" for n in portable) and not summed(portable)
    assert summed(optimized(["NchwcTransformer"]))
    if platform.machine() == "x86_64":  # MLAS has NCHWc kernels on x86 only
        assert any(n.domain == "com.microsoft.nchwc" for n in optimized(["ConvAddActivationFusion"]))


def test_softmax_is_written_out_in_place_on_request_and_alike_from_bytes_or_a_proto() -> None:
    model = _normaliser("Softmax", 13, 1)
    owned = onnx.ModelProto()
    owned.CopyFrom(model)
    assert without_cpu_dependent_ops(owned, in_place=True) is owned
    assert "Softmax" not in [n.op_type for n in owned.graph.node]
    assert [n.op_type for n in owned.graph.node] == [n.op_type for n in without_cpu_dependent_ops(model).graph.node]
    x = np.random.default_rng(3).standard_normal((2, 5, 7, 3)).astype(np.float32)
    from_proto = session(model, portable=True).run(None, {"x": x})[0]
    from_bytes = session(model.SerializeToString(), portable=True).run(None, {"x": x})[0]
    assert from_proto.tobytes() == from_bytes.tobytes() == session(owned).run(None, {"x": x})[0].tobytes()
    assert [n.op_type for n in model.graph.node] == ["Softmax"]  # the caller's proto is left as it was
