"""Which tensors stay out of INT8, each with the reason in words.

A tensor is kept in float (out of the calibration cache and without Q/DQ) when it is:

* computed inside an ``If``/``Loop``/``Scan`` subgraph (calibration only sees the main graph);
* not floating point (indices, shapes, masks);
* shape computation: derived from ``Shape``/``Size`` outputs, or feeding only shape inputs
  (``Reshape`` shape, ``Resize`` scales, ``Slice`` starts, ...);
* the output of a ``Concat`` whose inputs' ranges differ by more than :data:`CONCAT_RANGE_RATIO`
  (box coordinates next to class scores), and layout-only ops that carry that output on;
* a tensor whose calibrated range is zero or not finite (a zero or infinite scale breaks TensorRT).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.graph import GraphIndex, subgraphs

# One INT8 scale for a Concat spends amax_max/127 per step. An input whose range is 16x smaller keeps
# fewer than 127/16 ~ 8 levels (under 3 bits): that ruins small-valued data such as class scores
# joined to pixel box coordinates (ratio ~100-1000), while the branches of ordinary CNN concats
# (Fire/Inception modules, feature pyramids) stay within a few x of each other.
CONCAT_RANGE_RATIO = 16.0

FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE})
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})

# Inputs (by position) that carry shapes, sizes, axes or scales rather than data.
SHAPE_INPUTS: dict[str, frozenset[int]] = {
    "Reshape": frozenset({1}),
    "Expand": frozenset({1}),
    "Tile": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Resize": frozenset({1, 2, 3}),
    "Upsample": frozenset({1}),
    "Pad": frozenset({1, 3}),
    "ConstantOfShape": frozenset({0}),
    "Range": frozenset({0, 1, 2}),
    "TopK": frozenset({1}),
    "Squeeze": frozenset({1}),
    "Unsqueeze": frozenset({1}),
    "Split": frozenset({1}),
    "OneHot": frozenset({1}),
    "CenterCropPad": frozenset({1}),
    "NonMaxSuppression": frozenset({2, 3, 4}),
    **{op: frozenset({1}) for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2")},
}
SHAPE_SOURCES = frozenset({"Shape", "Size"})
# Ops that only move values around: a mixed-range tensor stays mixed-range through them.
LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


def subgraph_tensors(model: onnx.ModelProto) -> dict[str, str]:
    """Every tensor computed (or stored) inside an If/Loop/Scan subgraph -> why it stays in float."""
    found: dict[str, str] = {}

    def walk(graph: onnx.GraphProto, where: str) -> None:
        reason = f"computed inside {where}: calibration only sees main-graph tensors, so it stays in float"
        for init in graph.initializer:
            found.setdefault(init.name, f"a constant of {where}: weights inside control flow stay in float")
        for node in graph.node:
            for out in node.output:
                if out:
                    found.setdefault(out, reason)
            _walk_node(node, where)

    def _walk_node(node: onnx.NodeProto, outer: str) -> None:
        for label, sub in subgraphs(node):
            inner = f"the {label} of {node.op_type} '{node.name or node.output[0]}'"
            walk(sub, inner if not outer else f"{inner} (in {outer})")

    for node in model.graph.node:
        _walk_node(node, "")
    return found


def excluded_tensors(model: onnx.ModelProto, amax: dict[str, float]) -> dict[str, str]:
    """Tensor name -> reason to keep it out of the cache and the Q/DQ model.

    ``model`` is the prepared (shape-inferred) model; ``amax`` the calibrated range of each tensor.
    Covers the main graph's inputs and node outputs, every tensor named in ``amax``, and every
    tensor inside control-flow subgraphs.
    """
    index = GraphIndex(model)
    excluded: dict[str, str] = dict(subgraph_tensors(model))
    candidates = [*index.inputs, *(out for node in model.graph.node for out in node.output if out)]
    candidates += [name for name in amax if name not in index.initializers]

    for name in candidates:
        dtype = index.elem_type(name)
        if dtype is not None and dtype not in FLOAT_TYPES and name not in excluded:
            excluded[name] = (
                f"{onnx.helper.tensor_dtype_to_np_dtype(dtype).name} tensor: INT8 applies to floating-point tensors only"
            )

    for name, reason in _shape_computation(index).items():
        excluded.setdefault(name, reason)

    for name, reason in _mixed_range_concats(index, amax, excluded).items():
        excluded.setdefault(name, reason)

    for name, value in amax.items():
        if name in excluded:
            continue
        if not math.isfinite(value):
            excluded[name] = f"calibrated range is {value}: an infinite or NaN scale would break the engine"
        elif value <= 0.0:
            excluded[name] = "calibrated range is 0 (always zero on the calibration data): a zero scale would break the engine"
    return excluded


def _label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} '{node.name or node.output[0]}'"


def _shape_computation(index: GraphIndex) -> dict[str, str]:
    """Tensors that compute shapes: derived from Shape/Size, or read only as shape inputs."""
    graph, constants = index.graph, index.initializers
    found: dict[str, str] = {}
    for node in graph.node:  # forward: values that depend only on tensor shapes
        if node.op_type in SHAPE_SOURCES:
            reason = f"computed from tensor shapes ({_label(node)})"
        else:
            data_inputs = [name for name in node.input if name and name not in constants]
            if not data_inputs or any(name not in found for name in data_inputs):
                continue
            reason = found[data_inputs[0]]
        for out in node.output:
            if out:
                found[out] = reason

    def only_shape_reads(name: str) -> str:
        """Why ``name`` is read only where shapes are expected ('' if it is not)."""
        readers = index.consumers(name, subgraph_reads=True)
        if name in index.outputs or not readers:
            return ""
        example = ""
        for reader, position in readers:
            if position in SHAPE_INPUTS.get(reader.op_type, ()):
                example = example or f"only feeds shape inputs (input {position} of {_label(reader)})"
            elif position < 0 or reader.op_type in SHAPE_SOURCES or not all(o in found for o in reader.output if o):
                return ""
        return example or next(found[o] for o in readers[0][0].output if o in found)

    # backward, consumers before producers: values read only where shapes are expected
    for name in [out for node in reversed(graph.node) for out in node.output] + list(index.inputs):
        if name and name not in found and name not in constants:
            reason = only_shape_reads(name)
            if reason:
                found[name] = reason
    return found


def _mixed_range_concats(index: GraphIndex, amax: dict[str, float], excluded: dict[str, str]) -> dict[str, str]:
    """Concat outputs joining inputs of very different ranges, and layout ops that carry them on."""
    found: dict[str, str] = {}
    for node in index.graph.node:
        if node.op_type != "Concat" or node.output[0] in excluded:
            continue
        ranges = {}
        for name in node.input:
            if name in index.initializers:
                values = numpy_helper.to_array(index.initializers[name])
                value = float(np.abs(values).max()) if values.size and values.dtype.kind == "f" else 0.0
            else:
                value = amax.get(name, 0.0)
            if math.isfinite(value) and value > 0.0:
                ranges[name] = value
        if len(ranges) < 2:
            continue
        high = max(ranges, key=ranges.__getitem__)
        low = min(ranges, key=ranges.__getitem__)
        ratio = ranges[high] / ranges[low]
        if ratio <= CONCAT_RANGE_RATIO:
            continue
        found[node.output[0]] = (
            f"{_label(node)} joins inputs whose ranges differ {ratio:.0f}x ('{high}' up to {ranges[high]:.3g},"
            f" '{low}' up to {ranges[low]:.3g}); one INT8 scale would leave '{low}' about {127 / ratio:.2g} of 127"
            f" levels (limit {CONCAT_RANGE_RATIO:g}x)"
        )
        frontier = [node.output[0]]
        while frontier:
            name = frontier.pop()
            for reader, position in index.consumers(name, subgraph_reads=True):
                if reader.op_type in LAYOUT_OPS and position == 0 and reader.output[0] not in found:
                    found[reader.output[0]] = f"carries the mixed-range output of {_label(node)} ({reader.op_type} only moves values)"
                    frontier.append(reader.output[0])
    return found
