"""Facts measured on one ONNX node, by name: what the rule files compare with their limits.

Each fact returns a value (a number, a string, or a list of numbers checked one by one), ``None`` when
the value cannot be known offline (a computed weight, an unknown dimension), or :data:`NOT_APPLICABLE`
when the rule does not concern this node (a grouping limit on an ungrouped Conv).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import onnx
from onnx import helper

from edgeq.graph import GraphIndex, describe_dims
from edgeq.targets import Target


class Missing(Enum):
    """What a fact or a rule gives instead of a value."""

    NOT_APPLICABLE = "not applicable"  # the rule does not concern this node
    UNKNOWN = "unknown"  # the value cannot be known offline


NOT_APPLICABLE = Missing.NOT_APPLICABLE


@dataclass(frozen=True)
class NodeContext:
    """One node, the graph around it and the target it is checked for."""

    node: onnx.NodeProto
    graph: GraphIndex
    target: Target
    opset: int

    def attr(self, name: str, default: Any = None) -> Any:
        for attribute in self.node.attribute:
            if attribute.name == name:
                value = helper.get_attribute_value(attribute)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def input(self, index: int) -> str:
        return self.node.input[index] if index < len(self.node.input) else ""

    def input_shape(self, index: int = 0) -> list[Any] | None:
        name = self.input(index)
        return self.graph.shape(name) if name else None

    def input_rank(self, index: int = 0) -> int | None:
        shape = self.input_shape(index)
        return len(shape) if shape is not None else None

    def weight_shape(self) -> tuple[int, ...] | None:
        """Shape of the Conv/ConvTranspose weight (input 1), from its value or its inferred shape."""
        value = self.graph.constant(self.input(1))
        return tuple(value.shape) if value is not None else self.graph.static_shape(self.input(1))


Fact = Callable[[NodeContext], Any]
FACTS: dict[str, Fact] = {}


def fact(function: Fact) -> Fact:
    """Register ``function`` as the fact of its name."""
    FACTS[function.__name__] = function
    return function


def _spatial(ctx: NodeContext) -> int | None:
    kernel = ctx.attr("kernel_shape")
    if kernel:
        return len(kernel)
    weight = ctx.weight_shape() if ctx.node.op_type in ("Conv", "ConvTranspose") else None
    if weight is not None:
        return len(weight) - 2
    rank = ctx.input_rank()
    return rank - 2 if rank is not None else None


@fact
def kernel(ctx: NodeContext) -> list[int] | None:
    """Kernel (or pooling window) size per spatial dimension."""
    shape = ctx.attr("kernel_shape")
    if shape:
        return list(shape)
    weight = ctx.weight_shape()
    return list(weight[2:]) if weight is not None else None


@fact
def strides(ctx: NodeContext) -> list[int] | None:
    spatial = _spatial(ctx)
    return list(ctx.attr("strides") or [1] * spatial) if spatial is not None else None


@fact
def dilations(ctx: NodeContext) -> list[int] | None:
    spatial = _spatial(ctx)
    return list(ctx.attr("dilations") or [1] * spatial) if spatial is not None else None


@fact
def pads(ctx: NodeContext) -> list[int] | None:
    """Padding per spatial dimension (the larger of begin and end), auto_pad included."""
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    spatial = _spatial(ctx)
    if spatial is None:
        return None
    if auto_pad == "VALID":
        return [0] * spatial
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        shape, kern, step, dil = ctx.input_shape(), kernel(ctx), strides(ctx), dilations(ctx)
        if shape is None or kern is None or not all(isinstance(d, int) for d in shape[2:]):
            return None
        total = [max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0) for n, k, s, d in zip(shape[2:], kern, step, dil, strict=False)]
        return [math.ceil(t / 2) for t in total]
    values = list(ctx.attr("pads") or [0] * (2 * spatial))
    return [max(values[i], values[i + spatial]) for i in range(spatial)]


@fact
def group(ctx: NodeContext) -> int:
    return int(ctx.attr("group", 1))


@fact
def spatial_rank(ctx: NodeContext) -> int | None:
    return _spatial(ctx)


@fact
def input_rank(ctx: NodeContext) -> int | None:
    return ctx.input_rank()


@fact
def output_channels(ctx: NodeContext) -> int | None:
    weight = ctx.weight_shape() if ctx.node.op_type in ("Conv", "ConvTranspose") else None
    if ctx.node.op_type == "Conv":
        return weight[0] if weight is not None else None
    if ctx.node.op_type == "ConvTranspose":
        return weight[1] * group(ctx) if weight is not None else None
    out = ctx.graph.shape(ctx.node.output[0])
    return out[-1] if out and isinstance(out[-1], int) else None


@fact
def grouped_channels_per_group(ctx: NodeContext) -> Any:
    """Input and output channels per group of a grouped convolution; depthwise ones (1 per group) are exempt."""
    groups = group(ctx)
    weight = ctx.weight_shape()
    if groups == 1:
        return NOT_APPLICABLE
    if weight is None:
        return None
    if ctx.node.op_type == "Conv":
        per_group_in, per_group_out = weight[1], weight[0] // groups
    else:
        per_group_in, per_group_out = weight[0] // groups, weight[1]
    if per_group_in == 1:
        return NOT_APPLICABLE  # depthwise: TensorRT has dedicated kernels ([U], see docs/check-rules.md)
    return [per_group_in, per_group_out]


@fact
def concat_axis(ctx: NodeContext) -> str | None:
    """The axis a Concat joins, named as in NCHW counted from the end: channel, height, width, batch..."""
    rank = len(ctx.graph.shape(ctx.node.output[0]) or ctx.input_shape() or [])
    if rank == 0:
        return None
    axis = int(ctx.attr("axis", 1))
    axis = axis + rank if axis < 0 else axis
    names = {rank - 1: "width", rank - 2: "height", rank - 3: "channel"}
    if axis in names and axis > 0:
        return names[axis]
    return "batch" if axis == 0 else f"{axis} of {rank}"


def _resize_scales_all(ctx: NodeContext) -> list[float] | None:
    if ctx.node.op_type == "Upsample":
        scales = ctx.attr("scales") or ctx.graph.constant(ctx.input(1))
        return [float(s) for s in scales] if scales is not None else None
    scale_input = 1 if ctx.opset < 11 else 2
    scales = ctx.graph.constant(ctx.input(scale_input))
    if scales is not None and scales.size:
        return [float(s) for s in scales.ravel()]
    inp, out = ctx.graph.static_shape(ctx.input(0)), ctx.graph.static_shape(ctx.node.output[0])
    if inp is None or out is None or 0 in inp:
        return None
    return [o / i for o, i in zip(out, inp, strict=False)]


@fact
def resize_scales(ctx: NodeContext) -> list[float] | None:
    """Height and width scale factors of a Resize/Upsample."""
    scales = _resize_scales_all(ctx)
    return scales[2:] if scales is not None else None


@fact
def resize_batch_channel_scales(ctx: NodeContext) -> list[float] | None:
    scales = _resize_scales_all(ctx)
    return scales[:2] if scales is not None else None


@fact
def resize_mode(ctx: NodeContext) -> str:
    """mode/coordinate_transformation_mode[/nearest_mode], with the ONNX defaults of the model's opset."""
    mode = ctx.attr("mode", "nearest")
    if ctx.node.op_type == "Upsample" or ctx.opset < 11:
        transform = "asymmetric"
        rounding = "floor"
    else:
        transform = ctx.attr("coordinate_transformation_mode", "half_pixel")
        rounding = ctx.attr("nearest_mode", "round_prefer_floor")
    return f"{mode}/{transform}/{rounding}" if mode == "nearest" else f"{mode}/{transform}"


@fact
def resize_nearest_scales(ctx: NodeContext) -> Any:
    return resize_scales(ctx) if ctx.attr("mode", "nearest") == "nearest" else NOT_APPLICABLE


@fact
def resize_linear_scales(ctx: NodeContext) -> Any:
    return resize_scales(ctx) if ctx.attr("mode", "nearest") == "linear" else NOT_APPLICABLE


@fact
def dla_generation(ctx: NodeContext) -> int | None:
    return ctx.target.dla_generation


@fact
def softmax_axis_size(ctx: NodeContext) -> int | None:
    shape = ctx.input_shape()
    if shape is None:
        return None
    axis = int(ctx.attr("axis", -1 if ctx.opset >= 13 else 1))
    size = shape[axis] if -len(shape) <= axis < len(shape) else None
    return size if isinstance(size, int) else None


@fact
def second_input_constant(ctx: NodeContext) -> bool:
    return ctx.graph.constant(ctx.input(1)) is not None


def _slice_inputs(ctx: NodeContext) -> tuple[list[int] | None, list[int] | None, list[int] | None, list[int] | None]:
    """(starts, ends, axes, steps) as int lists, None for one computed at run time (steps before opset 10)."""
    if ctx.opset < 10:
        return ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes"), None
    values: list[list[int] | None] = []
    for index in range(1, 5):
        name = ctx.input(index)
        value = ctx.graph.constant(name) if name else np.array([])
        values.append(None if value is None else [int(v) for v in value.ravel()])
    starts, ends, axes, steps = values
    return starts, ends, axes, steps


@fact
def slice_steps(ctx: NodeContext) -> list[int] | None:
    starts, _, _, steps = _slice_inputs(ctx)
    if steps is None and ctx.opset >= 10 and ctx.input(4):
        return None
    return [abs(s) for s in steps] if steps else [1] * len(starts or [1])


@fact
def slice_is_static(ctx: NodeContext) -> bool:
    return all(v is not None for v in _slice_inputs(ctx)[:2]) and (ctx.opset < 10 or all(
        ctx.graph.constant(name) is not None for name in ctx.node.input[3:5] if name))


@fact
def slices_first_dim(ctx: NodeContext) -> bool | None:
    starts, ends, axes, _ = _slice_inputs(ctx)
    shape = ctx.input_shape()
    if starts is None or ends is None or shape is None or (axes is None and ctx.input(3)):
        return None
    rank = len(shape)
    axes = [a + rank if a < 0 else a for a in (axes or range(len(starts)))]
    if 0 not in axes:
        return False
    index = axes.index(0)
    full = isinstance(shape[0], int) and ends[index] >= shape[0]
    return not (starts[index] == 0 and (full or ends[index] >= 2**31 - 1))


@fact
def static_shape(ctx: NodeContext) -> Any:
    """True when every activation the node reads or writes has a known static shape, else the first one that does not."""
    for name in [*ctx.node.input, *ctx.node.output]:
        if not name or ctx.graph.constant(name) is not None:
            continue
        if ctx.graph.static_shape(name) is None:
            return f"{name} is {describe_dims(ctx.graph.shape(name))}"
    return True


@fact
def largest_non_batch_dim(ctx: NodeContext) -> int | None:
    dims = [d for name in [*ctx.node.input, *ctx.node.output] if name and ctx.graph.constant(name) is None
            for d in (ctx.graph.shape(name) or [])[1:] if isinstance(d, int)]
    return max(dims) if dims else None


@fact
def zero_point_max_abs(ctx: NodeContext) -> int | None:
    name = ctx.input(2)
    if not name:
        return 0
    value = ctx.graph.constant(name)
    return int(np.abs(value.astype(np.int64)).max()) if value is not None and value.size else (0 if value is not None else None)


@fact
def topk_k(ctx: NodeContext) -> int | None:
    if ctx.opset < 10:
        return int(ctx.attr("k"))
    value = ctx.graph.constant(ctx.input(1))
    return int(value.ravel()[0]) if value is not None else None


@fact
def lrn_size(ctx: NodeContext) -> int:
    return int(ctx.attr("size"))
