"""Explicit quantization: a Q/DQ ONNX model by TensorRT's placement rules (trt-jetson-facts.md 3.4).

Symmetric INT8 with zero point 0; activations per tensor (scale = amax / 127), weights per channel
(scale = max |w| / 127 along axis 0 for Conv and Gemm with transB=1, 1 for ConvTranspose, the output
axis for Gemm with transB=0 and MatMul). Q/DQ pairs go on the inputs of Conv, ConvTranspose, Gemm and
MatMul, never on their outputs: TensorRT fuses the next layer's Q into them. Weights stay float32 behind a
Q/DQ pair. Built with onnx-graphsurgeon; the result passes ``onnx.checker``.

Residual Adds get a Q/DQ pair on the skip (identity) input only, so TensorRT fuses Conv + Add (+ Relu) into one INT8
layer with the convolution's output unquantized: TensorRT Developer Guide, 'Working with Quantized Types' >
'Q/DQ Layer-Placement Recommendations' (do not quantize the outputs of weighted operations by default; quantize the
residual input); NVIDIA/TensorRT release/8.6 tools/experimental/trt-engine-explorer/examples/pytorch/resnet/
qat_model.py lines 144-147 and 210-213 (``out += self.residual_quantizer(identity)``), whose engine fuses
``Conv_34 + Add_42 + Relu_43`` in INT8 (tests/fixtures/trt/trex-resnet-qat-residual.graph.json). Which input is the
skip follows ModelOpt's ``build_non_residual_input_map`` (NVIDIA/TensorRT-Model-Optimizer main
modelopt/onnx/quantization/graph_utils.py lines 496-572): an Add input that comes out of a convolution through only
the layers TensorRT fuses after it (bias, scale, BatchNormalization, ReLU-family, SiLU, MaxPool, copies) is the conv
branch; with one such input the other is the skip; with two, the one farther from their lowest common ancestor is
the conv branch; an Add with neither, or with both from the same convolution, is not a residual and gets no Q/DQ.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
BACKBONE_OPS = ("Conv", "ConvTranspose")
EPILOGUE_OPS = ("Relu", "LeakyRelu", "Clip", "BatchNormalization", "MaxPool", "Sigmoid")
COPY_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity")


@dataclass(frozen=True)
class QuantizedLayer:
    """One layer that runs in INT8: its node, the activations and the weights (with axis) it quantizes."""

    index: int
    name: str
    op_type: str
    activations: tuple[str, ...]
    weights: tuple[tuple[str, int], ...]


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


def _same_shape(a: gs.Tensor, b: gs.Tensor) -> bool:
    """Equal ranks and no two known dims that differ (symbolic dims of a dynamic model may be equal at run time)."""
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
        return False
    return all(x == y or not (isinstance(x, int) and isinstance(y, int)) for x, y in zip(a.shape, b.shape, strict=True))


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
            skip = _residual_skip(node) if (
                a.name in activations and b.name in activations and a.name != b.name and _same_shape(a, b)
            ) else None
            if skip is not None and skip.name not in excluded:
                layers.append(QuantizedLayer(index, name, node.op, (skip.name,), ()))
    return layers


def _producer(tensor: gs.Tensor) -> gs.Node | None:
    return tensor.inputs[0] if not isinstance(tensor, gs.Constant) and tensor.inputs else None


def _data_input(node: gs.Node) -> gs.Tensor | None:
    """The one non-constant input of an epilogue, copy, bias or scale node (None when it has another)."""
    variables = [t for t in node.inputs if not isinstance(t, gs.Constant)]
    if node.op == "Mul" and len(variables) == 2:  # SiLU: x * Sigmoid(x)
        a, b = variables
        for x, gate in ((a, b), (b, a)):
            producer = _producer(gate)
            if producer is not None and producer.op == "Sigmoid" and producer.inputs[0] is x:
                return x
        return None
    return variables[0] if len(variables) == 1 else None


def _backbone(tensor: gs.Tensor) -> gs.Node | None:
    """The Conv/ConvTranspose ``tensor`` comes out of through only layers TensorRT fuses after it, else None."""
    producer = _producer(tensor)
    while producer is not None and producer.op not in BACKBONE_OPS:
        fusible = producer.op in EPILOGUE_OPS or producer.op in COPY_OPS or producer.op in ("Add", "Mul")
        source = _data_input(producer) if fusible else None
        producer = _producer(source) if source is not None else None
    return producer


def _ancestors(node: gs.Node) -> dict[int, int]:
    """Distance (in nodes) from ``node`` to each node it depends on, itself included, keyed by id()."""
    found, frontier = {id(node): 0}, [node]
    while frontier:
        following = []
        for current in frontier:
            for tensor in current.inputs:
                parent = _producer(tensor)
                if parent is not None and id(parent) not in found:
                    found[id(parent)] = found[id(current)] + 1
                    following.append(parent)
        frontier = following
    return found


def _residual_skip(add: gs.Node) -> gs.Tensor | None:
    """The skip input of a residual Add (the one to quantize), or None when the Add is not a residual."""
    a, b = add.inputs
    pa, pb = _producer(a), _producer(b)
    if pa is None or pb is None:
        return None
    ba, bb = _backbone(a), _backbone(b)
    if (ba is None and bb is None) or ba is bb:
        return None
    da, db = _ancestors(pa), _ancestors(pb)
    common = set(da) & set(db)
    lca = min(common, key=lambda k: (da[k], db[k])) if common else None
    if lca is None:  # two independent inputs: nothing is skipped around a convolution
        return None
    if ba is not None and bb is not None:
        return b if da[lca] > db[lca] else a  # the input farther from the fork is the conv branch (ties as ModelOpt)
    conv = ba if ba is not None else bb
    if lca == id(conv):  # the "skip" starts at the same convolution (ConvNeXt-style): not a residual
        return None
    return b if ba is not None else a


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
