"""Multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul nodes, from inferred shapes, and the shares.

Counts are per inference at batch 1: a symbolic or unknown first (batch) dimension counts as 1; any
other unknown dimension makes the count unknown (None). Other ops count 0. A node of unknown size is
never dropped silently: the shares say how many there are and how many of them miss INT8 (or the DLA),
since those make the true share lower than the share of the known MACs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from edgeq.check.facts import NodeContext
from edgeq.check.report import NodeResult, Shares

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


def shares(nodes: Sequence[NodeResult], with_dla: bool) -> Shares:
    """MACs in total, in INT8 and on the DLA, counting the MAC nodes of unknown size apart (by where they run)."""
    known = [n for n in nodes if n.macs is not None]
    unknown = [n for n in nodes if n.macs is None]
    return Shares(
        total_macs=sum(n.macs or 0 for n in known),
        int8_macs=sum(n.macs or 0 for n in known if n.verdict == "int8"),
        dla_macs=sum(n.macs or 0 for n in known if n.dla == "dla") if with_dla else None,
        unknown_mac_nodes=len(unknown),
        unknown_not_int8=sum(n.verdict != "int8" for n in unknown),
        unknown_not_dla=sum(n.dla != "dla" for n in unknown) if with_dla else None,
    )
