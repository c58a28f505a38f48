"""Multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul nodes, from inferred shapes.

Counts are per inference at batch 1: a symbolic or unknown first (batch) dimension counts as 1; any
other unknown dimension makes the count unknown (None). Other ops count 0.
"""

from __future__ import annotations

import math

from edgeq.check.facts import NodeContext

MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def _dims(ctx: NodeContext, name: str) -> list[int] | None:
    """The shape of ``name`` with an unknown batch dimension taken as 1; None if another dim is unknown."""
    value = ctx.graph.constant(name)
    if value is not None:
        return list(value.shape)
    shape = ctx.graph.shape(name)
    if shape is None:
        return None
    dims = [d if isinstance(d, int) and d >= 0 else None for d in shape]
    if dims and dims[0] is None:
        dims[0] = 1
    return None if None in dims else dims  # type: ignore[return-value]


def node_macs(ctx: NodeContext) -> int | None:
    """The node's multiply-accumulates at batch 1 (0 for ops that have none counted)."""
    op = ctx.node.op_type
    if op not in MAC_OPS:
        return 0
    weight = _dims(ctx, ctx.node.input[1])
    if op == "Conv":
        out = _dims(ctx, ctx.node.output[0])
        if out is None or weight is None:
            return None
        return math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose":
        inp = _dims(ctx, ctx.node.input[0])
        if inp is None or weight is None:
            return None
        return math.prod(inp) * math.prod(weight[1:])
    a = _dims(ctx, ctx.node.input[0])
    out = _dims(ctx, ctx.node.output[0])
    if a is None or out is None:
        return None
    if op == "Gemm":
        k = a[0] if int(ctx.attr("transA", 0)) else a[-1]
        return math.prod(out) * k
    return math.prod(out) * a[-1]
