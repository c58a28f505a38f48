"""Q/DQ placement by TensorRT's rules on small graphs, and the Q/DQ model run by ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from edgeq.calibrate.activations import activation_tensors
from edgeq.calibrate.collect import collect
from edgeq.calibrate.qdq import build_qdq, plan_layers
from edgeq.calibrate.ranges import compute_ranges
from edgeq.device.compare import cosine, top1_agreement
from tests.calibrate_nets import deconv_net, fire_net, residual_net, resnet_net, scores


def _quantize(model: onnx.ModelProto, x: np.ndarray, excluded: set[str] = frozenset()) -> tuple[onnx.ModelProto, list]:
    tensors = activation_tensors(model)
    stats = collect(model, tensors, [x[i : i + 8] for i in range(0, len(x), 8)])
    amax = {n: r.amax for n, r in compute_ranges(stats, "entropy").items()}
    layers = plan_layers(model, tensors, excluded)
    return build_qdq(model, layers, amax), layers


def _qdq_inputs(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Node name -> the original tensors that reach it through a DequantizeLinear."""
    producers = {out: node for node in model.graph.node for out in node.output}
    found = {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        via = []
        for name in node.input:
            dq = producers.get(name)
            if dq is not None and dq.op_type == "DequantizeLinear":
                via.append(producers[dq.input[0]].input[0])
        if via:
            found[node.name] = via
    return found


def _axis(model: onnx.ModelProto, tensor: str) -> int | None:
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == tensor:
            return next((a.i for a in node.attribute if a.name == "axis"), None)
    raise AssertionError(f"{tensor} is not quantized")


def _x(shape: tuple[int, ...], n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def test_conv_chain_with_concat_quantizes_conv_inputs_and_weights_only() -> None:
    model = fire_net()
    qdq, _ = _quantize(model, _x((3, 32, 32)))
    onnx.checker.check_model(qdq)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    placed = _qdq_inputs(qdq)
    assert set(placed) == {n.name for n in convs}  # no Q/DQ before Relu, MaxPool, Concat, pool, Flatten
    for conv in convs:
        assert placed[conv.name] == [conv.input[0], conv.input[1]]
        assert _axis(qdq, conv.input[1]) == 0  # weights per output channel
        assert _axis(qdq, conv.input[0]) is None  # activations per tensor
        assert conv.input[2] not in placed[conv.name]  # bias stays float
    concat = next(n for n in model.graph.node if n.op_type == "Concat")
    assert [n for n in qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == concat.output[0]]  # concat output feeds a conv
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in {o.name for o in model.graph.output} for n in qdq.graph.node)
    for init in qdq.graph.initializer:
        if init.name.endswith("_zero_point"):
            assert init.data_type == onnx.TensorProto.INT8 and not numpy_helper.to_array(init).any()


def test_residual_add_quantizes_the_skip_input_only_and_gemm_weights_axis_0() -> None:
    model = residual_net()
    qdq, _ = _quantize(model, _x((3, 16, 16)))
    onnx.checker.check_model(qdq)
    add = next(n for n in model.graph.node if n.op_type == "Add")
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    placed = _qdq_inputs(qdq)
    branch, skip = add.input  # Add(conv branch, stem): the conv's output stays float so TensorRT fuses Conv + Add
    assert placed[add.name] == [skip]
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == branch for n in qdq.graph.node)
    assert placed[gemm.name] == [gemm.input[0], gemm.input[1]]
    assert _axis(qdq, gemm.input[1]) == 0  # transB=1: [out, in]
    assert next(n for n in model.graph.node if n.op_type == "Relu" and n.input[0] == add.output[0]).name not in placed


def test_conv_transpose_weights_per_channel_on_axis_1() -> None:
    model = deconv_net()
    qdq, _ = _quantize(model, _x((3, 8, 8)))
    onnx.checker.check_model(qdq)
    deconv = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul")
    assert _axis(qdq, deconv.input[1]) == 1
    scale = next(numpy_helper.to_array(i) for i in qdq.graph.initializer if i.name == f"{deconv.input[1]}_scale")
    assert scale.shape == (4,)  # one scale per output channel of the [Cin, Cout, k, k] weights
    assert _qdq_inputs(qdq)[matmul.name] == [matmul.input[0], matmul.input[1]]


def test_excluded_tensor_keeps_its_layer_in_float() -> None:
    model = residual_net()
    add = next(n for n in model.graph.node if n.op_type == "Add")
    qdq, layers = _quantize(model, _x((3, 16, 16)), excluded={add.input[1]})
    assert add.name not in _qdq_inputs(qdq)
    assert add.name not in {layer.name for layer in layers}
    assert any(layer.op_type == "Conv" for layer in layers)


def test_qdq_model_runs_in_onnx_runtime_close_to_fp32(int8_path: str) -> None:
    from edgeq.calibrate.host import host_model
    from edgeq.calibrate.predict import session

    model = fire_net(seed=3)
    qdq, _ = _quantize(model, _x((3, 32, 32), n=64, seed=1))
    x = _x((3, 32, 32), n=64, seed=2)
    reference, quantized = scores(model, x), session(host_model(qdq, int8_path)).run(None, {"data": x})[0]
    assert not np.array_equal(reference, quantized)  # it really quantizes
    assert cosine(reference, quantized) > 0.999
    assert top1_agreement(reference, quantized) >= 0.95


def test_host_model_keeps_the_numbers_and_runs_on_int8_kernels(tmp_path, int8_path: str) -> None:
    """Both paths rewrite the Q/DQ model into integer kernels on its own grid: u8 x s8 where the CPU sums those
    exactly, u8 x u8 (weights on the uint8 grid) where it saturates."""
    from edgeq.calibrate.host import host_model

    model = fire_net(seed=2)
    x = np.random.default_rng(8).uniform(-1, 1, (16, 3, 32, 32)).astype(np.float32)
    qdq, _ = _quantize(model, x)
    made = host_model(qdq, int8_path)
    host = onnx.ModelProto.FromString(made.model)
    onnx.checker.check_model(host)

    def run(m: onnx.ModelProto, level: ort.GraphOptimizationLevel, saved: str = "") -> np.ndarray:
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.optimized_model_filepath = saved
        return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"data": x})[0]

    plain = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # reference kernels: the rewrite must be exact
    reference = run(qdq, plain)
    np.testing.assert_array_equal(run(host, plain), reference)
    fused = run(host, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, str(tmp_path / "optimized.onnx"))
    optimized = onnx.load(tmp_path / "optimized.onnx").graph
    constants = {i.name: numpy_helper.to_array(i) for i in host.graph.initializer}
    quantize = [n for n in host.graph.node if n.op_type == "QuantizeLinear"]
    assert quantize and not any(n.input[0] in constants for n in quantize)  # weight pairs folded
    assert {constants[n.input[2]].item() for n in quantize} == {128}  # activations: uint8, the int8 symmetric grid
    clips = [n for n in host.graph.node if n.op_type == "Clip"]  # step 4: a pair on a Relu's input, now on integers
    assert clips and len(quantize) + len(clips) > sum(n.op_type == "QuantizeLinear" and n.input[0] not in constants for n in qdq.graph.node)
    weights = [constants[n.input[0]] for n in host.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in constants]
    assert weights and {w.dtype for w in weights} == {np.dtype(np.uint8 if int8_path == "saturating" else np.int8)}
    convs = sum(n.op_type == "Conv" for n in qdq.graph.node)
    floats = sum(n.op_type in ("Conv", "FusedConv") for n in optimized.node)
    assert floats == 1 and sum(n.op_type == "QLinearConv" for n in optimized.node) == convs - 1  # the last feeds the float head
    assert cosine(reference, fused) > 0.9999


def test_both_paths_give_the_same_bits_where_the_cpu_sums_u8_x_s8_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The saturating path's u8 x u8 kernels sum the integers the exact path's u8 x s8 kernels sum, and both
    requantize them alike: where both can run exactly (this CPU), their outputs are the same bytes."""
    from edgeq.calibrate.host import host_model
    from edgeq.calibrate.predict import session
    from edgeq.device.int8_arith import measure

    if measure().measured != "exact":
        pytest.skip("this CPU's u8 x s8 kernels saturate (probe): only the saturating path is exact here")
    model = fire_net(seed=4)
    qdq, _ = _quantize(model, _x((3, 32, 32), n=64, seed=5))
    x = _x((3, 32, 32), n=64, seed=6)
    exact, saturating = (session(host_model(qdq, path)).run(None, {"data": x})[0] for path in ("exact", "saturating"))
    assert not np.array_equal(exact, scores(model, x))  # it really quantizes
    assert exact.tobytes() == saturating.tobytes()


def _quantized(model: onnx.ModelProto) -> set[str]:
    """The activations (graph inputs or node outputs) that feed a QuantizeLinear."""
    constants = {i.name for i in model.graph.initializer}
    return {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in constants}


def test_resnet_blocks_quantize_weighted_inputs_and_skips_and_nothing_else() -> None:
    """The rule: Q/DQ on the activation input of every Conv/Gemm and on the skip input of every residual Add, where the
    skip of an identity block is the block's input and that of a strided block is its 1x1 downsample conv (NVIDIA's
    qat_model.py quantizes ``identity = self.downsample(x)``)."""
    model = resnet_net()
    qdq, _ = _quantize(model, _x((3, 16, 16)))
    nodes = {n.name: n for n in model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    identity_skip = adds[0].input[1]  # the stem's output
    downsample = adds[1].input[1]  # the 1x1 strided conv's output
    assert producer[identity_skip].op_type == "Relu" and producer[downsample].op_type == "Conv"
    weighted_inputs = {n.input[0] for n in nodes.values() if n.op_type in ("Conv", "Gemm")}
    assert _quantized(qdq) == weighted_inputs | {identity_skip, downsample}
    assert {adds[0].input[0], adds[1].input[0]}.isdisjoint(_quantized(qdq))  # conv branches stay float


def test_adds_that_are_not_residuals_get_no_qdq() -> None:
    from tests.calibrate_nets import NetBuilder

    b = NetBuilder(4)
    conv = b.conv("data", 3, 4, 3, relu=False)
    convnext = b.node("Add", [conv, b.node("Relu", [b.node("Mul", [conv, conv])])])  # the "skip" starts at that conv
    plain = b.node("Add", [b.node("Sigmoid", ["data"]), b.node("Tanh", ["data"])])  # no convolution on either side
    model = b.model("data", b.node("Add", [convnext, b.conv(plain, 3, 4, 3, relu=False)]), ["N", 3, 8, 8], ["N", 4, 8, 8])
    layers = plan_layers(model, activation_tensors(model))
    quantized_adds = {layer.activations for layer in layers if layer.op_type == "Add"}
    assert quantized_adds == set()


@pytest.mark.slow
def test_yolov8_bottlenecks_quantize_the_shortcut_only_and_predict_no_worse() -> None:
    """A real residual model from a package (nudenet's YOLOv8n): each C2f bottleneck adds x + cv2(cv1(x)); Q/DQ goes on x
    only. Its outputs against FP32 (ONNX Runtime's reference kernels) are no worse than with both Add inputs quantized."""
    import importlib.util
    from pathlib import Path

    from edgeq.calibrate.policy import excluded_tensors
    from edgeq.calibrate.prepare import prepare
    from edgeq.calibrate.qdq import QuantizedLayer
    from edgeq.model import load, with_input_shapes

    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nudenet is not installed (pip install -e '.[test]')")
    path = Path(spec.submodule_search_locations[0]) / "320n.onnx"
    model = with_input_shapes(prepare(load(path), source=str(path)).model, {"images": [1, 3, 320, 320]}, path)
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0, 1, (8, 3, 320, 320)).astype(np.float32)
    tensors = activation_tensors(model)
    amax = {n: r.amax for n, r in compute_ranges(collect(model, tensors, [calibration[i:i + 1] for i in range(8)]), "entropy").items()}
    layers = plan_layers(model, tensors, excluded_tensors(model, amax))
    bottlenecks = [n for n in model.graph.node if n.op_type == "Add" and "/m." in n.name]
    assert len(bottlenecks) == 6
    planned = {layer.name: layer.activations for layer in layers if layer.op_type == "Add"}
    for add in bottlenecks:
        shortcut = next(i for i in add.input if "/cv2/act/Mul" not in i)
        assert planned[add.name] == (shortcut,)
    both = [QuantizedLayer(layer.index, layer.name, "Add", tuple(model.graph.node[layer.index].input), ())
            if layer.op_type == "Add" else layer for layer in layers]

    image = np.random.default_rng(1).uniform(0, 1, (1, 3, 320, 320)).astype(np.float32)

    def error(chosen: list) -> float:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # reference kernels: exact math
        outs = [ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"images": image})[0]
                for m in (model, build_qdq(model, chosen, amax))]
        return float(np.mean((outs[1] - outs[0]) ** 2))

    skip_only, both_inputs = error(layers), error(both)
    assert skip_only <= both_inputs * 1.01, (skip_only, both_inputs)
