"""Loading ONNX models, with shape inference and one clear error for a missing or corrupt file."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from edgeq.errors import InputError
from edgeq.graph import GraphIndex


def load(path: Path | str, *, infer_shapes: bool = True) -> onnx.ModelProto:
    """Read an ONNX model (external data included) and, by default, run ONNX shape inference on it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, OSError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise InputError(f"{path}: not a readable ONNX model ({exc.__class__.__name__}: {exc})") from None
    if not model.graph.node:
        raise InputError(f"{path}: not an ONNX model (no graph nodes found)")
    for tensor in _tensors(model.graph):
        _check_tensor(tensor, path)
    return _infer(model, path) if infer_shapes else model


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph carries: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    yield from (sparse.values for sparse in graph.sparse_initializer)
    for node in graph.node:
        for attribute in node.attribute:
            yield from ([attribute.t] if attribute.HasField("t") else [])
            yield from attribute.tensors
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _tensors(sub)


# Elements per stored item: packed 4-bit types hold two per byte (and per int32_data entry),
# complex types store two numbers per element.
_PACKED_4BIT = {name for name in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, name)}
_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def _check_tensor(tensor: onnx.TensorProto, path: Path) -> None:
    """A tensor must carry the data its dims declare: a model that declares 1e9 elements in a few bytes is
    refused here, before anything allocates them."""
    if any(dim < 0 for dim in tensor.dims):
        raise InputError(f"{path}: tensor '{tensor.name}' has a negative dimension {list(tensor.dims)}")
    elements = math.prod(tensor.dims)
    type_name = onnx.TensorProto.DataType.Name(tensor.data_type) if tensor.data_type in onnx.TensorProto.DataType.values() else "?"
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return  # onnx.load read the external file into raw_data already, or it was missing and load failed
    if tensor.HasField("raw_data"):
        if type_name in ("?", "UNDEFINED", "STRING"):
            raise InputError(f"{path}: tensor '{tensor.name}' has raw data of type {type_name}")
        bits = 4 if type_name in _PACKED_4BIT else np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize * 8
        carried, expected, unit = len(tensor.raw_data), (elements * bits + 7) // 8, "bytes"
    else:
        unit = "values"
        carried = sum(len(getattr(tensor, name)) for name in _TYPED_FIELDS)
        per_item = 2 if type_name in _PACKED_4BIT else 1
        expected = (elements + per_item - 1) // per_item * (2 if type_name in ("COMPLEX64", "COMPLEX128") else 1)
    if carried != expected:
        raise InputError(
            f"{path}: tensor '{tensor.name}' declares {elements:,} elements ({type_name}, dims {list(tensor.dims)[:8]}) "
            f"but carries {carried:,} {unit} where {expected:,} are needed: the model is damaged"
        )


def _infer(model: onnx.ModelProto, source: Path | str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 (onnx raises several unrelated types here)
        raise InputError(f"{source}: ONNX shape inference failed: {exc}") from None


def with_input_shapes(model: onnx.ModelProto, shapes: dict[str, list[int | str]], source: Path | str = "model") -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs take the given dims (an int >= 0 fixes a dim, a string names it, -1 leaves it unknown), shapes re-inferred."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    by_name = {i.name: i for i in fixed.graph.input}
    for name, dims in shapes.items():
        if name not in by_name:
            raise InputError(f"{source}: input '{name}' is not an input of the model (it has {', '.join(by_name) or 'none'})")
        shape = by_name[name].type.tensor_type.shape
        if len(shape.dim) != len(dims):
            raise InputError(f"{source}: input '{name}' has {len(shape.dim)} dimensions in the model, {len(dims)} given")
        for dim, value in zip(shape.dim, dims, strict=True):
            if isinstance(value, str):
                dim.dim_param = value
            elif value >= 0:
                dim.dim_value = value
            else:
                dim.Clear()
    del fixed.graph.value_info[:]
    return _infer(fixed, source)


def check_inputs(model: onnx.ModelProto, declared: list[str], source: Path | str) -> None:
    """``declared`` (a recipe's ``inputs``) names exactly the inputs the model is fed; else one InputError naming them."""
    taken = GraphIndex(model).inputs
    extra = [name for name in declared if name not in taken]
    missing = [name for name in taken if name not in declared]
    if extra:
        raise InputError(f"{source}: inputs: '{extra[0]}' is not an input of the model (it has {', '.join(taken)})")
    if missing:
        raise InputError(f"{source}: inputs: the model's input(s) {', '.join(repr(m) for m in missing)} are not declared;"
                         f" the recipe declares every input the model takes (it declares {', '.join(declared)})")


def opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the model imports."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1

