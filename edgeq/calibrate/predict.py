"""Predicted INT8 accuracy: the FP32 model and the Q/DQ model on the validation data, side by side.

The Q/DQ model runs as :func:`host_model`: each weight's Q/DQ pair is replaced by the weight it
yields (round-half-even, clamp, rescale: the same numbers ONNX Runtime computes), leaving Q/DQ pairs
on activations only. ONNX Runtime then runs plain float kernels (its NCHWc convolutions and pools)
between those pairs, about 2x faster than on the Q/DQ model itself. (Its fused int8 kernels need a
Q right after each Conv, which TensorRT's placement does not have; rewriting the activation pairs to
uint8 with zero point 128 gave no speed-up here.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.calibrate import activations
from edgeq.calibrate.report import PredictedAccuracy
from edgeq.device.compare import cosine, top1_agreement
from edgeq.metrics import Metric


def _fake_quantized(weight: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    """DequantizeLinear(QuantizeLinear(weight)) for int8 (per tensor or along ``axis``)."""
    shape = [1] * weight.ndim
    if scale.ndim == 1 and weight.ndim:
        shape[axis] = scale.size
    scale, zero = scale.reshape(shape).astype(np.float32), zero.reshape(shape).astype(np.float32)
    levels = np.clip(np.rint(weight / scale) + zero, -128, 127)
    return ((levels - zero) * scale).astype(np.float32)


def host_model(qdq: onnx.ModelProto) -> bytes:
    """``qdq`` with every weight's Q/DQ pair folded into the weight, serialized for ONNX Runtime."""
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = model.graph
    values = {init.name: init for init in graph.initializer}
    quantized_weights = {
        node.output[0]: node for node in graph.node if node.op_type == "QuantizeLinear" and node.input[0] in values
    }
    folded: dict[str, np.ndarray] = {}
    for node in graph.node:
        quantize = quantized_weights.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if quantize is None:
            continue
        axis = next((a.i for a in quantize.attribute if a.name == "axis"), 1)
        weight, scale, zero = (numpy_helper.to_array(values[name]) for name in quantize.input[:3])
        folded[node.output[0]] = _fake_quantized(weight, scale, zero, axis)
    removed = set(folded) | {q.output[0] for q in quantized_weights.values()}
    kept = [node for node in graph.node if not removed.intersection(node.output)]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(array, name) for name, array in folded.items())
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    remaining = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(remaining)
    return model.SerializeToString()


def slices(x: np.ndarray, rows: int) -> Iterator[np.ndarray]:
    """``x`` in consecutive blocks of ``rows`` samples."""
    return (x[start : start + rows] for start in range(0, len(x), rows))


def outputs(models: list[onnx.ModelProto | bytes], batches: Iterable[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """All graph outputs of each of ``models`` over the input ``batches``, every batch through every model in turn."""
    sessions = [activations.session(model) for model in models]
    names = [[o.name for o in sess.get_outputs()] for sess in sessions]
    parts: list[list[list[np.ndarray]]] = [[] for _ in sessions]
    for x in batches:
        for sess, wanted, collected in zip(sessions, names, parts):
            collected.append(activations.run(sess, x, wanted))
    return [
        {name: np.concatenate([p[i] for p in collected]) for i, name in enumerate(wanted)}
        for wanted, collected in zip(names, parts)
    ]


def compare(
    fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], labels: np.ndarray, metric: Metric, budget: float
) -> PredictedAccuracy:
    """The metric on both, the drop in points, top-1 agreement and per-output cosine similarity."""
    first = next(iter(fp32))
    fp32_value, int8_value = metric(fp32[first], labels), metric(int8[first], labels)
    drop = fp32_value - int8_value
    return PredictedAccuracy(
        metric=metric.name,
        samples=len(labels),
        fp32=fp32_value,
        int8=int8_value,
        drop=drop,
        top1_agreement=top1_agreement(fp32[first], int8[first]),
        cosine={name: cosine(fp32[name], int8[name]) for name in fp32},
        budget=budget,
        passed=drop <= budget,
    )
