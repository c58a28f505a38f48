"""Explicit quantization: a Q/DQ ONNX model by TensorRT's placement rules (trt-jetson-facts.md 3.4).

Symmetric INT8 with zero point 0; activations per tensor (scale = amax / 127), weights per channel
(scale = max |w| / 127 along axis 0 for Conv and Gemm with transB=1, 1 for ConvTranspose, the output
axis for Gemm with transB=0 and MatMul). Q/DQ pairs go on the inputs of Conv, ConvTranspose, Gemm and
MatMul and on both inputs of residual Adds (two activation inputs of one shape), never on outputs:
TensorRT fuses the next layer's Q into them. Weights stay float32 behind a Q/DQ pair. Built with
onnx-graphsurgeon; the result passes ``onnx.checker``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class QuantizedLayer:
    """One layer that runs in INT8: its node, the activations and the weights (with axis) it quantizes."""

    index: int
    name: str
    op_type: str
    activations: tuple[str, ...]
    weights: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "activations": list(self.activations),
                "weights": [w for w, _ in self.weights]}


def _weight_axis(node: gs.Node, position: int, rank: int) -> int | None:
    if node.op == "Conv" and position == 1:
        return 0
    if node.op == "ConvTranspose" and position == 1:
        return 1
    if node.op == "Gemm" and position == 1:
        return 0 if node.attrs.get("transB", 0) else 1
    if node.op == "Gemm" and position == 0:
        return 1 if node.attrs.get("transA", 0) else 0
    if node.op == "MatMul" and rank == 2:
        return 1 if position == 1 else 0
    return None


def _shape(tensor: gs.Tensor) -> tuple | None:
    return tuple(tensor.shape) if tensor.shape is not None else None


def plan_layers(model: onnx.ModelProto, activations: Collection[str], excluded: Collection[str] = ()) -> list[QuantizedLayer]:
    """The layers Q/DQ goes into; a layer touching an excluded activation stays in float."""
    graph = gs.import_onnx(model)
    activations, excluded = set(activations), set(excluded)
    layers = []
    for index, node in enumerate(graph.nodes):
        name = node.name or f"{node.op}_{index}"
        if node.op in WEIGHTED_OPS:
            acts, weights = [], []
            for position, tensor in enumerate(node.inputs[:2]):
                if tensor.name in activations:
                    acts.append(tensor.name)
                elif isinstance(tensor, gs.Constant) and tensor.values.dtype == np.float32:
                    axis = _weight_axis(node, position, tensor.values.ndim)
                    if axis is None and node.op != "MatMul":
                        break
                    weights.append((tensor.name, -1 if axis is None else axis))
                else:
                    break
            else:
                if acts and not excluded.intersection(acts):
                    layers.append(QuantizedLayer(index, name, node.op, tuple(acts), tuple(weights)))
        elif node.op == "Add" and len(node.inputs) == 2:
            a, b = node.inputs
            if (
                a.name in activations and b.name in activations and a.name != b.name
                and _shape(a) is not None and _shape(a) == _shape(b)
                and not excluded.intersection((a.name, b.name))
            ):
                layers.append(QuantizedLayer(index, name, node.op, (a.name, b.name), ()))
    return layers


def weight_scales(values: np.ndarray, axis: int) -> np.ndarray:
    """Per-channel scales max |w| / 127 along ``axis`` (per tensor when axis is -1); never zero."""
    magnitude = np.abs(values.astype(np.float32))
    if axis < 0:
        amax = np.asarray(magnitude.max() if magnitude.size else 0.0, np.float32)
    else:
        amax = np.moveaxis(magnitude, axis, 0).reshape(magnitude.shape[axis], -1).max(axis=1)
    return (np.where(amax > 0, amax, 1.0) / 127.0).astype(np.float32)


class _Inserter:
    """Adds one shared Q/DQ pair per tensor to a graph."""

    def __init__(self, graph: gs.Graph) -> None:
        self.graph = graph
        self.done: dict[str, gs.Variable] = {}

    def pair(self, tensor: gs.Tensor, scale: np.ndarray, axis: int | None) -> gs.Variable:
        if tensor.name in self.done:
            return self.done[tensor.name]
        base = tensor.name
        scale_c = gs.Constant(f"{base}_scale", np.asarray(scale, np.float32))
        zero = gs.Constant(f"{base}_zero_point", np.zeros(np.shape(scale), np.int8))
        quantized = gs.Variable(f"{base}_quantized", dtype=np.int8, shape=tensor.shape)
        restored = gs.Variable(f"{base}_dequantized", dtype=np.float32, shape=tensor.shape)
        attrs = {"axis": axis} if axis is not None else {}
        self.graph.nodes.append(gs.Node("QuantizeLinear", f"{base}_QuantizeLinear", attrs, [tensor, scale_c, zero], [quantized]))
        self.graph.nodes.append(gs.Node("DequantizeLinear", f"{base}_DequantizeLinear", dict(attrs), [quantized, scale_c, zero], [restored]))
        self.done[tensor.name] = restored
        return restored


def build_qdq(model: onnx.ModelProto, layers: list[QuantizedLayer], amax: Mapping[str, float]) -> onnx.ModelProto:
    """``model`` with Q/DQ pairs inserted for ``layers``, activation scales from ``amax``."""
    graph = gs.import_onnx(model)
    nodes = list(graph.nodes)
    inserter = _Inserter(graph)
    for layer in layers:
        node = nodes[layer.index]
        weight_axes = dict(layer.weights)
        for position, tensor in enumerate(node.inputs):
            if tensor.name in layer.activations:
                node.inputs[position] = inserter.pair(tensor, np.float32(amax[tensor.name] / 127.0), None)
            elif tensor.name in weight_axes:
                axis = weight_axes[tensor.name]
                node.inputs[position] = inserter.pair(tensor, weight_scales(tensor.values, axis), None if axis < 0 else axis)
    graph.cleanup().toposort()
    exported = gs.export_onnx(graph)
    exported.ir_version = model.ir_version
    del exported.opset_import[:]
    exported.opset_import.extend(model.opset_import)
    onnx.checker.check_model(exported)
    return exported
