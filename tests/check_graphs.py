"""Small ONNX graphs for the `edgeq check` tests, built with onnx.helper and shape-inferred like model.load does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeq import targets
from edgeq.targets import Target


def finish(nodes: list[onnx.NodeProto], inputs: dict[str, Sequence[int | str]], output: str,
           initializers: dict[str, np.ndarray] | None = None, opset: int = 17,
           elem_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A shape-inferred model with inputs of the given shapes and type, and one output of any type."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(name, elem_type, list(shape)) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.UNDEFINED, None)],
        [numpy_helper.from_array(value.astype(np.float32) if value.dtype.kind == "f" else value, name)
         for name, value in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)


def conv(kernel: int = 3, stride: int = 1, pad: int = 1, group: int = 1, cin: int = 8, cout: int = 8, hw: int = 64,
         dilation: int = 1, opset: int = 17, batch: int | str = 1, transpose: bool = False) -> onnx.ModelProto:
    """x (batch, cin, hw, hw) -> Conv or ConvTranspose -> y."""
    op = "ConvTranspose" if transpose else "Conv"
    weight = np.ones((cin, cout // group, kernel, kernel) if transpose else (cout, cin // group, kernel, kernel))
    node = helper.make_node(op, ["x", "w"], ["y"], name="conv", kernel_shape=[kernel, kernel], strides=[stride, stride],
                            pads=[pad] * 4, group=group, dilations=[dilation, dilation])
    return finish([node], {"x": [batch, cin, hw, hw]}, "y", {"w": weight}, opset)


def pool(op: str = "MaxPool", window: int = 2, stride: int = 2, pad: int = 0, hw: int = 64) -> onnx.ModelProto:
    node = helper.make_node(op, ["x"], ["y"], name="pool", kernel_shape=[window, window], strides=[stride, stride], pads=[pad] * 4)
    return finish([node], {"x": [1, 8, hw, hw]}, "y")


def concat(axis: int) -> onnx.ModelProto:
    node = helper.make_node("Concat", ["a", "b"], ["y"], name="concat", axis=axis)
    return finish([node], {"a": [1, 8, 16, 16], "b": [1, 8, 16, 16]}, "y")


def resize(scale_hw: float, mode: str = "nearest", transform: str = "asymmetric", nearest_mode: str = "floor") -> onnx.ModelProto:
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", mode=mode,
                            coordinate_transformation_mode=transform, nearest_mode=nearest_mode)
    return finish([node], {"x": [1, 8, 16, 16]}, "y", {"scales": np.array([1.0, 1.0, scale_hw, scale_hw])})


def single(op: str, inputs: dict[str, Sequence[int | str]], initializers: dict[str, np.ndarray] | None = None,
           opset: int = 17, **attrs: object) -> onnx.ModelProto:
    """One node of ``op`` over the named inputs (graph inputs, or initializers when given a value)."""
    names = list(inputs) + [n for n in (initializers or {}) if n not in inputs]
    node = helper.make_node(op, names, ["y"], name=op.lower(), **attrs)
    return finish([node], inputs, "y", initializers, opset)


def target(name: str, **changes: object) -> Target:
    """A shipped target profile, optionally with fields changed (e.g. another TensorRT version)."""
    profile = targets.resolve(name)
    return profile.model_copy(update={"name": f"{profile.name}-test", **changes}) if changes else profile
