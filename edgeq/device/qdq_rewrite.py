"""Rewrites of an INT8 Q/DQ model for ONNX Runtime's CPU integer kernels (host prediction and on-device build).

- :func:`fold_weight_quantization`: each weight's QuantizeLinear is folded into the int8 levels it yields
  (round half to even, clamp); the DequantizeLinear stays, so ONNX Runtime fuses the layer with exactly
  these levels and scales (per channel).
- :func:`activations_to_uint8`: ONNX Runtime's x86 INT8 kernels want uint8 activations; a symmetric int8
  grid with zero point 0 ([-128, 127] x s) is the same grid as uint8 with zero point 128, so the numbers do
  not change. Weights stay int8.
- :func:`reduce_weight_range`: int8 weights requantized to 7 bits (levels -64..64, scale x max/64, the
  int32 biases that depend on that scale with them). On CPUs whose u8 x s8 kernels add product pairs in
  16 bits with saturation (edgeq.device.int8_arith), such weights cannot overflow (2 x 255 x 64 = 32640),
  so the fast kernels stay correct. ONNX Runtime documents two ways out of that saturation, reduce_range
  or U8U8 (https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html, "When and why
  do I need to try U8U8?"); U8U8 keeps 8-bit weights but loses the fast kernels (the example's batch-1
  latency: 1.28x FP32 with U8U8 against 0.62x with 7-bit U8S8 on this project's machine), so edgeq
  reduces the range, at the engine build, where the device's own probe says so.

All need the ``onnx`` package (protobuf); :func:`rewrite_for_kernels` returns None without it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Set

import numpy as np

SEVEN_BIT = 64  # the largest 7-bit weight level (ONNX Runtime's reduced range for symmetric int8: -64..64)
WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}
BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}


@dataclass
class Rewrite:
    """What :func:`rewrite_model` changed."""

    reduced_range: bool  # weights were brought to 7 bits (the CPU's u8 x s8 kernels saturate)
    activations_to_uint8: int  # activation tensors moved to uint8 (zero point 128)
    weights_7bit: int  # weight tensors requantized to 7 bits
    weights_8bit: int  # int8 weight tensors left wider than 7 bits (asymmetric ones are not requantized)


def onnx_available() -> bool:
    return importlib.util.find_spec("onnx") is not None


def _attribute(node: Any, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _along(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A per-tensor (size 1) or per-channel (1-D) parameter shaped to broadcast against an ``ndim`` tensor."""
    shape = [1] * ndim
    if values.size > 1:
        shape[axis] = values.size
    return values.reshape(shape)


def _keep_only(items: Any, keep: Callable[[Any], bool]) -> None:
    """Filter a repeated protobuf field in place."""
    kept = [item for item in items if keep(item)]
    del items[:]
    items.extend(kept)


def _drop_unused_initializers(graph: Any) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    _keep_only(graph.initializer, lambda i: i.name in used)


def fold_weight_quantization(graph: Any) -> int:
    """Replace each QuantizeLinear of an initializer by the int8 levels it yields, in place; how many."""
    from onnx import numpy_helper

    values = {init.name: init for init in graph.initializer}
    folded = 0
    kept = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in values or len(node.input) < 3:
            kept.append(node)
            continue
        weight, scale, zero = (numpy_helper.to_array(values[name]) for name in node.input[:3])
        axis = _attribute(node, "axis", 1) % max(weight.ndim, 1)
        info = np.iinfo(zero.dtype)
        levels = np.rint(weight / _along(scale, weight.ndim, axis)) + _along(zero.astype(np.float32), weight.ndim, axis)
        graph.initializer.append(numpy_helper.from_array(np.clip(levels, info.min, info.max).astype(zero.dtype), node.output[0]))
        folded += 1
    del graph.node[:]
    graph.node.extend(kept)
    _drop_unused_initializers(graph)
    return folded


def activations_to_uint8(model: Any) -> int:
    """Move every symmetric int8 activation pair to uint8 with zero point 128, in place; how many tensors."""
    from onnx import numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    constants: Set[str] = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    graph_outputs = {o.name for o in graph.output}
    consumers: Dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def int8_zero(name: str) -> Optional[np.ndarray]:
        if name not in initializers:
            return None
        array = numpy_helper.to_array(initializers[name])
        return array if array.dtype == np.int8 and not array.any() else None

    replaced: Dict[str, str] = {}
    changed_tensors: Set[str] = set()
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        source, quantized = node.input[0], node.output[0]
        if source in initializers or source in constants or quantized in graph_outputs:
            continue
        users = consumers.get(quantized, [])
        zero_points = [node.input[2]] + [u.input[2] for u in users if len(u.input) >= 3]
        if not users or any(u.op_type != "DequantizeLinear" for u in users) or len(zero_points) != len(users) + 1:
            continue
        arrays = [a for a in (int8_zero(z) for z in zero_points) if a is not None]
        if len(arrays) != len(zero_points):
            continue
        for holder, zp, array in zip([node] + users, zero_points, arrays):
            if zp not in replaced:
                replaced[zp] = zp + "_uint8_128"
                graph.initializer.append(numpy_helper.from_array(np.full(array.shape, 128, np.uint8), replaced[zp]))
            holder.input[2] = replaced[zp]
        changed_tensors.add(quantized)
    _drop_unused_initializers(graph)
    _keep_only(graph.value_info, lambda v: v.name not in changed_tensors)
    return len(changed_tensors)


def reduce_weight_range(graph: Any) -> Rewrite:
    """Requantize the int8 weights (DequantizeLinear of a symmetric int8 initializer feeding a Conv, Gemm or
    MatMul) whose levels exceed 7 bits, per channel where the scale is, in place. New initializers are
    written under new names, so nothing shared changes under another node."""
    from onnx import numpy_helper

    values = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(values[name])

    def add(name: str, data: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(data, name))
        values[name] = graph.initializer[-1]
        return name

    new_scale: Dict[str, np.ndarray] = {}  # weight DQ output -> its 7-bit scale
    wide: Set[str] = set()  # int8 weights left wider than 7 bits (asymmetric: zero point not 0)
    for node in list(graph.node):
        slot = WEIGHT_INPUT.get(node.op_type)
        dq = producer.get(node.input[slot]) if slot is not None and len(node.input) > slot else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in values or dq.output[0] in new_scale:
            continue
        levels = array(dq.input[0])
        if levels.dtype != np.int8:
            continue
        scale = array(dq.input[1])
        axis = _attribute(dq, "axis", 1) % levels.ndim
        others = tuple(i for i in range(levels.ndim) if i != axis) if scale.size > 1 else None
        peak = np.abs(levels.astype(np.int32)).max(axis=others)
        if peak.max() <= SEVEN_BIT:
            continue
        if len(dq.input) > 2 and dq.input[2] and array(dq.input[2]).any():
            wide.add(dq.output[0])
            continue
        factor = (np.maximum(peak, SEVEN_BIT) / SEVEN_BIT).astype(np.float32).reshape(scale.shape)
        seven = np.clip(np.rint(levels / _along(factor, levels.ndim, axis)), -SEVEN_BIT, SEVEN_BIT).astype(np.int8)
        dq.input[0] = add(dq.input[0] + "_7bit", seven)
        dq.input[1] = add(dq.input[1] + "_7bit", (scale * factor).astype(np.float32))
        new_scale[dq.output[0]] = array(dq.input[1])
    for node in graph.node:  # int32 biases are quantized with input scale x weight scale: follow the new scale
        slot = BIAS_INPUT.get(node.op_type)
        if slot is None or len(node.input) <= slot or node.input[WEIGHT_INPUT[node.op_type]] not in new_scale:
            continue
        bias_dq, input_dq = producer.get(node.input[slot]), producer.get(node.input[0])
        if (bias_dq is None or bias_dq.op_type != "DequantizeLinear" or bias_dq.input[0] not in values
                or input_dq is None or input_dq.op_type != "DequantizeLinear"):
            continue
        bias, old = array(bias_dq.input[0]).astype(np.float64), array(bias_dq.input[1]).astype(np.float64)
        scale = (array(input_dq.input[1]) * new_scale[node.input[WEIGHT_INPUT[node.op_type]]]).astype(np.float32)
        bias_dq.input[0] = add(bias_dq.input[0] + "_7bit", np.rint(bias * old / scale).astype(np.int32))
        bias_dq.input[1] = add(bias_dq.input[1] + "_7bit", scale)
    _drop_unused_initializers(graph)
    return Rewrite(reduced_range=True, activations_to_uint8=0, weights_7bit=len(new_scale), weights_8bit=len(wide))


def rewrite_model(model: Any, reduced_range: bool) -> Rewrite:
    """The whole rewrite, in place: activations to uint8; with ``reduced_range``, weights folded and to 7 bits."""
    moved = activations_to_uint8(model)
    if not reduced_range:
        return Rewrite(reduced_range=False, activations_to_uint8=moved, weights_7bit=0, weights_8bit=0)
    fold_weight_quantization(model.graph)
    weights = reduce_weight_range(model.graph)
    weights.activations_to_uint8 = moved
    return weights


def rewrite_for_kernels(src: str, dst: str, reduced_range: bool) -> Optional[Rewrite]:
    """:func:`rewrite_model` from file ``src`` to file ``dst``; None (nothing written) without the onnx package."""
    if not onnx_available():
        return None
    import onnx

    model = onnx.load(src)
    done = rewrite_model(model, reduced_range)
    onnx.save(model, dst)
    return done


def kernels_sentence(rewrite: Rewrite) -> str:
    """What the rewritten model runs on, and why, for reports."""
    if not rewrite.reduced_range:
        return "ONNX Runtime's u8 x s8 integer kernels, 8-bit weights (this CPU sums the products exactly)"
    text = (f"ONNX Runtime's u8 x s8 integer kernels, {rewrite.weights_7bit} weight tensors requantized to 7 bits "
            "(reduced range, as ONNX Runtime documents for x86 without VNNI: this CPU adds u8 x s8 product pairs "
            "in 16 bits with saturation, and 7-bit weights cannot overflow)")
    if rewrite.weights_8bit:
        text += f"; {rewrite.weights_8bit} asymmetric int8 weight tensors stay 8-bit and may clip"
    return text
