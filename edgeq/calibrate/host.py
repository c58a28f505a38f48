"""The Q/DQ model rewritten for a fast, numerically equivalent ONNX Runtime run on the host (x86).

TensorRT's placement puts Q/DQ pairs on layer inputs only, a pattern ONNX Runtime runs as float
kernels wrapped in (de)quantize ops: about 2x slower than FP32. :func:`host_model` rewrites it, keeping
the quantization grid of every tensor:

1. each weight's Q/DQ pair is folded into the weight it yields (round half to even, clamp, rescale);
2. each activation pair is also put, with the same scale, on the inputs of the Relu, MaxPool and
   Concat ops that lead to it (when nothing else reads those inputs), back to the producing Conv.
   With zero point 0 these ops commute with quantization (q(relu(x)) = relu(q(x)), q(max) = max(q),
   q(concat) = concat(q)), so every tensor that reached a layer input before reaches it unchanged;
3. the activation pairs go to uint8 with zero point 128, the same grid
   (:func:`edgeq.device.qdq_uint8.activations_to_uint8`).

ONNX Runtime then fuses DQ -> Conv -> Q into its u8s8 QLinearConv and Concat into QLinearConcat: the
INT8 prediction runs about as fast as FP32 instead of 2x slower. Outputs differ from the Q/DQ model's
only by float rounding inside the kernels.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.device.qdq_uint8 import activations_to_uint8

COMMUTING_OPS = frozenset({"Relu", "MaxPool", "Concat"})


def _fake_quantized(weight: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    """DequantizeLinear(QuantizeLinear(weight)) for int8 (per tensor or along ``axis``)."""
    shape = [1] * weight.ndim
    if scale.ndim == 1 and weight.ndim:
        shape[axis] = scale.size
    scale, zero = scale.reshape(shape).astype(np.float32), zero.reshape(shape).astype(np.float32)
    levels = np.clip(np.rint(weight / scale) + zero, -128, 127)
    return ((levels - zero) * scale).astype(np.float32)


def fold_weights(graph: onnx.GraphProto) -> None:
    """Replace every weight's Q/DQ pair by the dequantized weight (step 1), in place."""
    values = {init.name: init for init in graph.initializer}
    quantize = {node.output[0]: node for node in graph.node if node.op_type == "QuantizeLinear" and node.input[0] in values}
    folded: dict[str, np.ndarray] = {}
    for node in graph.node:
        pair = quantize.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if pair is not None:
            axis = next((a.i for a in pair.attribute if a.name == "axis"), 1)
            weight, scale, zero = (numpy_helper.to_array(values[name]) for name in pair.input[:3])
            folded[node.output[0]] = _fake_quantized(weight, scale, zero, axis)
    removed = set(folded) | set(quantize)
    kept = [node for node in graph.node if not removed.intersection(node.output)]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(array, name) for name, array in folded.items())
    used = {name for node in graph.node for name in node.input}
    remaining = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(remaining)


def propagate_activation_pairs(graph: onnx.GraphProto) -> int:
    """Repeat each activation pair back through Relu/MaxPool/Concat (step 2), in place; the pairs added."""
    constants = {init.name for init in graph.initializer}
    outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    after: dict[str, list[onnx.NodeProto]] = {}  # producer output -> the pair to emit right after it

    def add_pair(tensor: str, scale: str, zero: str) -> None:
        source = producer[tensor]
        raw = f"{tensor}_host_raw"
        source.output[list(source.output).index(tensor)] = raw
        producer[raw] = source
        after.setdefault(raw, []).extend([
            helper.make_node("QuantizeLinear", [raw, scale, zero], [f"{tensor}_host_q"], name=f"{tensor}_host_QuantizeLinear"),
            helper.make_node("DequantizeLinear", [f"{tensor}_host_q", scale, zero], [tensor], name=f"{tensor}_host_DequantizeLinear"),
        ])

    def walk(tensor: str, scale: str, zero: str) -> None:
        node = producer.get(tensor)
        if node is None or node.op_type not in COMMUTING_OPS:
            return
        inputs = [name for name in node.input if name]
        if any(name in constants or name in outputs or name not in producer or readers[name] != 1 for name in inputs):
            return
        for name in inputs:
            add_pair(name, scale, zero)
            walk(f"{name}_host_raw", scale, zero)

    for node in list(graph.node):
        if node.op_type == "QuantizeLinear" and node.input[0] not in constants:
            walk(node.input[0], node.input[1], node.input[2])
    ordered = []
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            ordered.extend(after.get(out, []))
    del graph.node[:]
    graph.node.extend(ordered)
    return sum(len(pair) for pair in after.values()) // 2


def host_model(qdq: onnx.ModelProto) -> bytes:
    """``qdq`` rewritten by steps 1-3 of the module docstring, serialized for ONNX Runtime."""
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    fold_weights(model.graph)
    propagate_activation_pairs(model.graph)
    with tempfile.TemporaryDirectory(prefix="edgeq-host-") as folder:
        src, dst = Path(folder) / "int8.onnx", Path(folder) / "uint8.onnx"
        onnx.save(model, src)
        activations_to_uint8(str(src), str(dst))
        return dst.read_bytes()
