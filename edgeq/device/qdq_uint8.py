"""Rewrite a symmetric INT8 Q/DQ model's activation pairs to uint8 with zero point 128.

ONNX Runtime's x86 INT8 kernels want uint8 activations; a symmetric int8 grid with zero point 0
([-128, 127] * s) is the same grid as uint8 with zero point 128, so the numbers do not change.
Weights (Q/DQ whose input is an initializer or Constant, or DQ-only int8 initializers) stay int8.
Needs the ``onnx`` package (protobuf); without it the model is left as it is.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable, Dict, Optional, Set

import numpy as np


def onnx_available() -> bool:
    return importlib.util.find_spec("onnx") is not None


def activations_to_uint8(src: str, dst: str) -> Optional[int]:
    """Write the rewritten model to ``dst``; the number of QuantizeLinear nodes changed, or None without onnx."""
    if not onnx_available():
        return None
    import onnx
    from onnx import numpy_helper

    model = onnx.load(src)
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
        arrays = [int8_zero(z) for z in zero_points]
        if any(a is None for a in arrays):
            continue
        for holder, zp, array in zip([node] + users, zero_points, arrays):
            if zp not in replaced:
                replaced[zp] = zp + "_uint8_128"
                graph.initializer.append(numpy_helper.from_array(np.full(array.shape, 128, np.uint8), replaced[zp]))
            holder.input[2] = replaced[zp]
        changed_tensors.add(quantized)
    used = {name for node in graph.node for name in node.input}
    _keep_only(graph.initializer, lambda i: i.name in used or i.name not in replaced)
    _keep_only(graph.value_info, lambda v: v.name not in changed_tensors)
    onnx.save(model, dst)
    return len(changed_tensors)


def _keep_only(items: Any, keep: Callable[[Any], bool]) -> None:
    """Filter a repeated protobuf field in place."""
    kept = [item for item in items if keep(item)]
    del items[:]
    items.extend(kept)
