"""Queries on one ONNX graph, each map built once on first use: who writes and who reads each tensor, constant
values, the graph's inputs and outputs, and the shapes and element types of its value_info (the helpers ModelOpt
and onnx-graphsurgeon keep for their passes, here on the protobuf itself).

An index describes the graph as it was when a map was first asked for: code that edits the graph builds a new
index afterwards (or copies a map it edits, as :func:`edgeq.calibrate.host.propagate_activation_pairs` does).
Only the main graph is indexed; :meth:`GraphIndex.consumers` can add the reads of control-flow subgraphs.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

import numpy as np
import onnx
from onnx import numpy_helper

Dim = int | str | None  # a known size, a symbolic name, or None for an unknown dimension
INTEGER_TYPES = frozenset(
    {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.UINT16,
     onnx.TensorProto.UINT32, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL}
)
Reader = tuple[onnx.NodeProto, int]  # a node and the position of the input that reads the tensor (-1: a subgraph reads it)


def subgraphs(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    """The graphs a node carries (the branches of If, the bodies of Loop and Scan), each with the name of its
    attribute (``name[i]`` for the i-th of a list of graphs)."""
    found: list[tuple[str, onnx.GraphProto]] = []
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            found.append((attribute.name, attribute.g))
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            found.extend((f"{attribute.name}[{i}]", sub) for i, sub in enumerate(attribute.graphs))
    return found


def outer_scope_reads(node: onnx.NodeProto) -> Iterator[str]:
    """Names a control-flow node's subgraphs (and theirs) read, outer-scope tensors among them (implicit inputs)."""
    for _, sub in subgraphs(node):
        for inner in sub.node:
            yield from (name for name in inner.input if name)
            yield from outer_scope_reads(inner)


def describe_dims(dims: list[Dim] | None) -> str:
    """A shape as people write it: 1x3x?xW (``?`` for unknown, the name for a symbolic dimension)."""
    if dims is None:
        return "unknown"
    return "x".join("?" if d is None else str(d) for d in dims)


class GraphIndex:
    """Read-only queries on the main graph of ``model`` (a ModelProto or a GraphProto)."""

    def __init__(self, model: onnx.ModelProto | onnx.GraphProto) -> None:
        self.graph = model.graph if isinstance(model, onnx.ModelProto) else model
        self._values: dict[str, np.ndarray] = {}

    # --- nodes around a tensor -------------------------------------------------------------------------------

    @cached_property
    def producers(self) -> dict[str, onnx.NodeProto]:
        """Tensor -> the node that writes it (graph inputs and initializers have none)."""
        return {out: node for node in self.graph.node for out in node.output if out}

    def producer(self, name: str) -> onnx.NodeProto | None:
        return self.producers.get(name)

    @cached_property
    def _readers(self) -> dict[str, list[Reader]]:
        readers: dict[str, list[Reader]] = {}
        for node in self.graph.node:
            for position, name in enumerate(node.input):
                if name:
                    readers.setdefault(name, []).append((node, position))
        return readers

    @cached_property
    def _readers_with_subgraphs(self) -> dict[str, list[Reader]]:
        readers = {name: list(found) for name, found in self._readers.items()}
        for node in self.graph.node:
            for name in outer_scope_reads(node):
                readers.setdefault(name, []).append((node, -1))
        return readers

    def consumers(self, name: str, *, subgraph_reads: bool = False) -> list[Reader]:
        """(node, input position) of every main-graph node reading ``name``, once per input that reads it.

        ``subgraph_reads``: also each control-flow node whose subgraphs read ``name`` (position -1), once per read.
        """
        return (self._readers_with_subgraphs if subgraph_reads else self._readers).get(name, [])

    # --- constants -------------------------------------------------------------------------------------------

    @cached_property
    def initializers(self) -> dict[str, onnx.TensorProto]:
        return {init.name: init for init in self.graph.initializer}

    @cached_property
    def constant_nodes(self) -> dict[str, onnx.TensorProto]:
        """Output of a Constant node (given by a ``value`` tensor) -> that tensor."""
        found = {}
        for node in self.graph.node:
            if node.op_type == "Constant":
                for attribute in node.attribute:
                    if attribute.name == "value":
                        found[node.output[0]] = attribute.t
        return found

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant output (None for computed tensors and absent inputs)."""
        if name in self._values:
            return self._values[name]
        tensor = self.constant_nodes.get(name) if name in self.constant_nodes else self.initializers.get(name)
        if tensor is None:
            return None
        self._values[name] = numpy_helper.to_array(tensor)
        return self._values[name]

    @cached_property
    def data_independent(self) -> frozenset[str]:
        """Tensors whose value does not depend on the graph inputs: initializers, Constant outputs, and the outputs
        of every node that reads only such tensors, its subgraphs included (TensorRT folds them)."""
        found = set(self.initializers)
        for node in self.graph.node:
            reads = [*node.input, *outer_scope_reads(node)]
            if node.op_type == "Constant" or all(not name or name in found for name in reads):
                found.update(out for out in node.output if out)
        return frozenset(found)

    # --- graph inputs and outputs ----------------------------------------------------------------------------

    @cached_property
    def inputs(self) -> tuple[str, ...]:
        """The graph inputs the caller feeds, in order (an initializer listed as an input, as older IRs do, is not one)."""
        return tuple(i.name for i in self.graph.input if i.name not in self.initializers)

    @cached_property
    def outputs(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.graph.output)

    # --- shapes and element types ----------------------------------------------------------------------------

    @cached_property
    def value_infos(self) -> dict[str, onnx.ValueInfoProto]:
        """Tensor -> its ValueInfoProto, from the graph's inputs, value_info and outputs."""
        return {info.name: info for info in [*self.graph.input, *self.graph.value_info, *self.graph.output]}

    @cached_property
    def shapes(self) -> dict[str, list[Dim]]:
        """Every tensor's known shape: from value_info (ints, symbolic names, None for an unknown dimension),
        and the dims of every initializer."""
        shapes: dict[str, list[Dim]] = {}
        for name, info in self.value_infos.items():
            tensor_type = info.type.tensor_type
            if tensor_type.HasField("shape"):
                shapes[name] = [_dim(d) for d in tensor_type.shape.dim]
        for init in self.graph.initializer:
            shapes[init.name] = list(init.dims)
        return shapes

    def shape(self, name: str) -> list[Dim] | None:
        """The inferred shape of tensor ``name``, or None when shape inference found none."""
        return self.shapes.get(name)

    def static_shape(self, name: str) -> tuple[int, ...] | None:
        """The shape as ints, or None when any dimension is unknown or symbolic."""
        dims = self.shapes.get(name)
        if dims is None:
            return None
        known = tuple(d for d in dims if isinstance(d, int) and d >= 0)
        return known if len(known) == len(dims) else None

    @cached_property
    def elem_types(self) -> dict[str, int]:
        """Tensor -> its ONNX element type, where known (UNDEFINED is left out): value_info, Constant outputs and
        initializers."""
        types = {
            name: info.type.tensor_type.elem_type
            for name, info in self.value_infos.items()
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type
        }
        types.update({name: tensor.data_type for name, tensor in self.constant_nodes.items()})
        types.update({name: init.data_type for name, init in self.initializers.items()})
        return types

    def elem_type(self, name: str) -> int | None:
        return self.elem_types.get(name)

    def is_integer(self, name: str) -> bool:
        return self.elem_types.get(name) in INTEGER_TYPES


def _dim(dim: onnx.TensorShapeProto.Dimension) -> Dim:
    if dim.HasField("dim_value"):
        return dim.dim_value
    if dim.HasField("dim_param"):
        return dim.dim_param
    return None
