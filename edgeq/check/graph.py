"""A read-only view of an ONNX graph for the check: shapes, element types and constant values by tensor name."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq import model as model_io

Dim = int | str | None
INTEGER_TYPES = frozenset(
    {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.UINT16,
     onnx.TensorProto.UINT32, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL}
)


@dataclass(frozen=True)
class Graph:
    """Facts about every tensor of a shape-inferred model."""

    shapes: dict[str, list[Dim]]
    elem_types: dict[str, int]
    constants: dict[str, np.ndarray]
    initializers: frozenset[str]
    inputs: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, model: onnx.ModelProto) -> Graph:
        graph = model.graph
        elem_types: dict[str, int] = {}
        for info in [*graph.input, *graph.value_info, *graph.output]:
            if info.type.HasField("tensor_type"):
                elem_types[info.name] = info.type.tensor_type.elem_type
        constants: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            constants[init.name] = numpy_helper.to_array(init)
            elem_types[init.name] = init.data_type
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        constants[node.output[0]] = numpy_helper.to_array(attr.t)
                        elem_types[node.output[0]] = attr.t.data_type
        init_names = frozenset(i.name for i in graph.initializer)
        inputs = tuple(i.name for i in graph.input if i.name not in init_names)
        return cls(model_io.tensor_shapes(model), elem_types, constants, init_names, inputs)

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

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant output (None for computed tensors and absent inputs)."""
        return self.constants.get(name) if name else None

    def is_integer(self, name: str) -> bool:
        return self.elem_types.get(name) in INTEGER_TYPES


def describe_dims(dims: list[Dim] | None) -> str:
    """A shape as people write it: 1x3x?xW (``?`` for unknown, the name for a symbolic dimension)."""
    if dims is None:
        return "unknown"
    return "x".join("?" if d is None else str(d) for d in dims)
