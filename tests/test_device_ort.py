"""onnxruntime backend: the uint8 activation rewrite keeps the numbers, and INT8 beats FP32 on this CPU.

Also holds the small models the other device tests build (SqueezeNet-like, made with onnx.helper,
quantized with onnxruntime.quantization.quantize_static in QDQ S8S8 symmetric per-channel mode).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from edgeq.device.compare import cosine
from edgeq.device.latency import latency_stats, time_calls
from edgeq.device.ort_backend import OnnxRuntimeBackend, layers_from_profile
from edgeq.device.qdq_rewrite import SEVEN_BIT, activations_to_uint8, rewrite_for_kernels
from edgeq.device.report import BuildOptions


def squeezenet_like(path: Path, size: int = 96, width: int = 1, batch: object = 1, seed: int = 0) -> Path:
    """Conv stem, max-pools, three fire modules (squeeze 1x1, expand 1x1 + 3x3, concat), 1x1 classifier, GAP."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(x: str, cin: int, cout: int, k: int, stride: int, name: str) -> str:
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        inits.append(numpy_helper.from_array(w, name + "_w"))
        inits.append(numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), name + "_b"))
        nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [name + "_c"], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4))
        nodes.append(helper.make_node("Relu", [name + "_c"], [name]))
        return name

    def fire(x: str, cin: int, squeeze: int, expand: int, name: str) -> str:
        s = conv(x, cin, squeeze, 1, 1, name + "_s")
        a, b = conv(s, squeeze, expand, 1, 1, name + "_e1"), conv(s, squeeze, expand, 3, 1, name + "_e3")
        nodes.append(helper.make_node("Concat", [a, b], [name], axis=1))
        return name

    w = width
    x = conv("input", 3, 64, 3, 2, "c1")
    nodes.append(helper.make_node("MaxPool", [x], ["p1"], kernel_shape=[3, 3], strides=[2, 2]))
    x = fire(fire("p1", 64, 16 * w, 64 * w, "f2"), 128 * w, 16 * w, 64 * w, "f3")
    nodes.append(helper.make_node("MaxPool", [x], ["p2"], kernel_shape=[3, 3], strides=[2, 2]))
    x = conv(fire("p2", 128 * w, 32 * w, 128 * w, "f4"), 256 * w, 10, 1, 1, "c10")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["logits"]))
    graph = helper.make_graph(
        nodes, "squeezenet_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def images(n: int, size: int = 96, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def quantize_qdq(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    """QDQ, int8 activations and weights, symmetric (zero point 0), per-channel weights: TensorRT's format."""

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.batches, None)

    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    return out


def run_reference(path: Path, x: np.ndarray) -> np.ndarray:
    """The model's outputs with every graph optimization off: ONNX operator semantics, one sample at a time."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ort")
    fp32 = squeezenet_like(folder / "fp32.onnx", width=2)
    return [fp32, quantize_qdq(fp32, folder / "qdq.onnx", images(8))]


def _zero_point_types(path: Path) -> list[int]:
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    return [inits[n.input[2]].data_type for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits]


def test_uint8_rewrite_moves_activations_and_keeps_the_numbers(models: list[Path], tmp_path: Path) -> None:
    _, qdq = models
    model = onnx.load(str(qdq))
    changed = activations_to_uint8(model)
    converted = tmp_path / "u8.onnx"
    onnx.save(model, str(converted))
    assert changed == len(_zero_point_types(qdq)) > 10
    assert set(_zero_point_types(qdq)) == {TensorProto.INT8}
    assert set(_zero_point_types(converted)) == {TensorProto.UINT8}
    weights = [n for n in onnx.load(str(converted)).graph.node
               if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized")]
    inits = {i.name: i for i in onnx.load(str(converted)).graph.initializer}
    assert weights and all(inits[n.input[0]].data_type in (TensorProto.INT8, TensorProto.INT32) for n in weights)
    x = images(4, seed=5)
    original, rewritten = run_reference(qdq, x), run_reference(converted, x)
    np.testing.assert_allclose(rewritten, original, rtol=1e-5, atol=1e-5 * np.abs(original).max())


def _weight_levels(path: Path) -> list[np.ndarray]:
    """The int8 initializers read by a DequantizeLinear that feeds a Conv."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    return [inits[producer[n.input[1]].input[0]] for n in model.graph.node if n.op_type == "Conv"]


def test_reduced_range_fits_7_bits_keeps_biases_and_the_fused_kernels(models: list[Path], tmp_path: Path) -> None:
    """ONNX Runtime's reduce_range, applied to a pushed Q/DQ model: 7-bit weights, int32 biases rescaled with them."""
    _, qdq = models
    out = tmp_path / "reduced.onnx"
    done = rewrite_for_kernels(str(qdq), str(out), reduced_range=True)
    assert done is not None and done.reduced_range and done.weights_7bit == 11 and done.weights_8bit == 0
    assert max(np.abs(w.astype(np.int32)).max() for w in _weight_levels(qdq)) == 127
    reduced = _weight_levels(out)
    assert all(w.dtype == np.int8 for w in reduced) and max(np.abs(w.astype(np.int32)).max() for w in reduced) == SEVEN_BIT
    x = images(4, seed=5)
    original, rewritten = run_reference(qdq, x), run_reference(out, x)
    assert cosine(original.ravel(), rewritten.ravel()) > 0.999  # a wrong bias scale would be far off
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert fused.count("QLinearConv") == 11 and "Conv" not in fused  # ONNX Runtime still fuses every layer
    again = rewrite_for_kernels(str(out), str(tmp_path / "again.onnx"), reduced_range=True)
    assert again is not None and again.weights_7bit == 0  # already 7-bit: left alone


def test_built_engine_matches_qdq_model_and_reports_int8_layers(models: list[Path], tmp_path: Path, int8_path: str) -> None:
    fp32, qdq = models
    backend = OnnxRuntimeBackend(threads=1)
    result = backend.build(BuildOptions(model=str(fp32), qdq=str(qdq), quantization="explicit", precision="int8"),
                           str(tmp_path), str(tmp_path))
    assert result.engine.int8_arithmetic is not None and result.engine.int8_arithmetic.verdict == int8_path
    assert ("requantized to 7 bits" in (result.engine.int8_kernels or "")) == (int8_path == "saturating")
    assert os.path.getsize(tmp_path / result.engine.artifact.path) == result.engine.artifact.size_bytes
    conv_layers = [layer for layer in result.engine.layers if layer.layer_type == "QLinearConv"]
    assert len(conv_layers) == 11 and {layer.precision for layer in conv_layers} == {"uint8"}
    session = backend.load(str(tmp_path), result.engine)
    x = images(3, seed=7)
    engine_out = np.concatenate([session.run({"input": x[i:i + 1]})[0] for i in range(3)])
    built_from = qdq  # on a saturating CPU: the Q/DQ model with 7-bit weights
    if int8_path == "saturating":
        built_from = tmp_path / "seven_bit.onnx"
        rewrite_for_kernels(str(qdq), str(built_from), reduced_range=True)
    expected = run_reference(built_from, x)
    # Fused integer kernels requantize with their own rounding: allow one quantization step.
    assert np.abs(engine_out - expected).max() < 0.05 * np.abs(expected).max()
    assert cosine(engine_out.ravel(), run_reference(qdq, x).ravel()) > 0.995


def test_profile_parser_reads_node_events() -> None:
    """Event layout of onnxruntime's chrome-trace profile (SessionOptions.enable_profiling)."""
    events = [
        {"cat": "Session", "name": "model_run", "args": {}},
        {"cat": "Node", "name": "conv1_fence_before", "args": {"op_name": "QLinearConv"}},
        {"cat": "Node", "name": "conv1_kernel_time",
         "args": {"op_name": "QLinearConv", "provider": "CPUExecutionProvider",
                  "output_type_shape": [{"uint8": [1, 8, 4, 4]}]}},
        {"cat": "Node", "name": "relu_kernel_time",
         "args": {"op_name": "Relu", "provider": "CPUExecutionProvider", "output_type_shape": [{"float": [1]}]}},
    ]
    layers = layers_from_profile(events)
    assert [(x.name, x.layer_type, x.precision, x.device) for x in layers] == [
        ("conv1", "QLinearConv", "uint8", "CPU"), ("relu", "Relu", "float", "CPU")]


def test_int8_batch1_latency_below_fp32(models: list[Path], tmp_path: Path, int8_path: str) -> None:
    fp32, qdq = models
    backend = OnnxRuntimeBackend(threads=1)
    result = backend.build(BuildOptions(model=str(fp32), qdq=str(qdq), quantization="explicit", precision="int8"),
                           str(tmp_path), str(tmp_path))
    x = {"input": images(1)}
    int8, ref = backend.load(str(tmp_path), result.engine), backend.load(str(tmp_path), result.reference)
    int8_ms = latency_stats(time_calls(lambda: int8.run(x), 20, 300), 1, "wallclock")
    fp32_ms = latency_stats(time_calls(lambda: ref.run(x), 20, 300), 1, "wallclock")
    print(f"batch-1 median: int8 {int8_ms.median_ms:.3f} ms, fp32 {fp32_ms.median_ms:.3f} ms")
    assert int8_ms.median_ms < fp32_ms.median_ms
