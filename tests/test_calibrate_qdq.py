"""Q/DQ placement by TensorRT's rules on small graphs, and the Q/DQ model run by ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from edgeq.calibrate.activations import activation_tensors
from edgeq.calibrate.collect import collect
from edgeq.calibrate.qdq import build_qdq, plan_layers
from edgeq.calibrate.ranges import compute_ranges
from edgeq.device.compare import cosine, top1_agreement
from tests.calibrate_nets import deconv_net, fire_net, residual_net, scores


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
    qdq, layers = _quantize(model, _x((3, 32, 32)))
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


def test_residual_add_gets_both_inputs_quantized_and_gemm_weights_axis_0() -> None:
    model = residual_net()
    qdq, _ = _quantize(model, _x((3, 16, 16)))
    onnx.checker.check_model(qdq)
    add = next(n for n in model.graph.node if n.op_type == "Add")
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    placed = _qdq_inputs(qdq)
    assert placed[add.name] == list(add.input)
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


def test_qdq_model_runs_in_onnx_runtime_close_to_fp32() -> None:
    model = fire_net(seed=3)
    qdq, _ = _quantize(model, _x((3, 32, 32), n=64, seed=1))
    x = _x((3, 32, 32), n=64, seed=2)
    reference, quantized = scores(model, x), scores(qdq, x)
    assert not np.array_equal(reference, quantized)  # it really quantizes
    assert cosine(reference, quantized) > 0.999
    assert top1_agreement(reference, quantized) >= 0.95


def test_host_model_keeps_the_numbers_and_runs_on_int8_kernels(tmp_path, int8_path: str) -> None:
    """Exact CPUs: the rewrite runs on fused u8 x s8 kernels. Saturating ones: the Q/DQ model on float kernels."""
    from edgeq.calibrate.host import host_model

    model = fire_net(seed=2)
    x = np.random.default_rng(8).uniform(-1, 1, (16, 3, 32, 32)).astype(np.float32)
    qdq, _ = _quantize(model, x)
    made = host_model(qdq, int8_path)
    host = onnx.ModelProto.FromString(made.model)
    onnx.checker.check_model(host)

    def run(m: onnx.ModelProto, level: ort.GraphOptimizationLevel, saved: str = "", config: dict[str, str] = {}) -> np.ndarray:
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.optimized_model_filepath = saved
        for key, value in config.items():
            options.add_session_config_entry(key, value)
        return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"data": x})[0]

    plain = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # reference kernels: the rewrite must be exact
    reference = run(qdq, plain)
    np.testing.assert_array_equal(run(host, plain), reference)
    fused = run(host, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, str(tmp_path / "optimized.onnx"), made.session_config)
    kernels = {n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node}
    if int8_path == "exact":
        constants = {i.name for i in host.graph.initializer}
        quantize = [n for n in host.graph.node if n.op_type == "QuantizeLinear"]
        assert quantize and not any(n.input[0] in constants for n in quantize)  # weight pairs folded
        zero_points = {numpy_helper.to_array(next(i for i in host.graph.initializer if i.name == n.input[2])).item() for n in quantize}
        assert zero_points == {128}  # uint8, the int8 symmetric grid
        assert len(quantize) > sum(n.op_type == "QuantizeLinear" and n.input[0] not in constants for n in qdq.graph.node)
        assert "QLinearConv" in kernels and made.session_config == {}
        assert cosine(reference, fused) > 0.9999
    else:
        assert made.session_config == {"session.disable_quant_qdq": "1"}
        assert "QLinearConv" not in kernels and kernels & {"Conv", "FusedConv"}  # float kernels: nothing to saturate
        assert cosine(reference, fused) > 0.999999
