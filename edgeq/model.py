"""Loading ONNX models, with shape inference and one clear error for a missing or corrupt file."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from edgeq.errors import InputError


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
    return _infer(model, path) if infer_shapes else model


def _infer(model: onnx.ModelProto, source: Path | str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises several unrelated types here
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
        for dim, value in zip(shape.dim, dims):
            if isinstance(value, str):
                dim.dim_param = value
            elif value >= 0:
                dim.dim_value = value
            else:
                dim.Clear()
    del fixed.graph.value_info[:]
    return _infer(fixed, source)


def opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the model imports."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1


def tensor_shapes(model: onnx.ModelProto) -> dict[str, list[int | str | None]]:
    """Every tensor's inferred shape: ints, symbolic names, or None for an unknown dimension."""
    shapes: dict[str, list[int | str | None]] = {}
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims: list[int | str | None] = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(dim.dim_value)
            elif dim.HasField("dim_param"):
                dims.append(dim.dim_param)
            else:
                dims.append(None)
        shapes[info.name] = dims
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes
