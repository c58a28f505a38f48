"""How many activations one ONNX Runtime run may expose: a byte budget, met by passes and batch rows.

Exposing every activation of a large-resolution model at once makes ONNX Runtime hold all of them (PP-OCRv4
det at 736 x 736: over a gigabyte per sample). :func:`plan` sizes each tensor for one sample from shape
inference at the data's real input shapes, then cuts the tensors, in graph order, into groups whose bytes per
sample fit the budget; each group is one pass over the calibration data, with as many samples per run as the
budget allows. A small model is one pass, as before; a large one is several, and memory stays bounded by the
budget whatever the resolution or the sample count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from edgeq import model as model_module
from edgeq.calibrate.collect import collect
from edgeq.calibrate.stats import TensorStats
from edgeq.graph import GraphIndex

DEFAULT_BUDGET = 256 << 20  # bytes of exposed activations per ONNX Runtime run


@dataclass(frozen=True)
class ExposurePlan:
    """Passes over the data: the tensors each exposes, samples per run, and bytes per sample of each group."""

    groups: list[list[str]]
    rows: list[int]
    sample_bytes: list[int]
    budget: int

    @property
    def passes(self) -> int:
        return len(self.groups)


def tensor_bytes(model: onnx.ModelProto, names: list[str], input_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Bytes of each of ``names`` for one sample, from shape inference with the inputs at ``input_shapes``
    (batch dim set to 1). A tensor whose size stays unknown counts as large as the largest known one."""
    fixed: dict[str, list[int | str]] = {name: [1, *shape[1:]] if shape else [] for name, shape in input_shapes.items()}
    present = GraphIndex(model).inputs
    inferred = model_module.with_input_shapes(model, {k: v for k, v in fixed.items() if k in present})
    infos = GraphIndex(inferred).value_infos
    sizes: dict[str, int | None] = {}
    for name in names:
        info = infos.get(name)
        dims = list(info.type.tensor_type.shape.dim) if info is not None and info.type.tensor_type.HasField("shape") else None
        itemsize = _itemsize(info) if info is not None else 4
        if dims is not None and all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            sizes[name] = int(np.prod([d.dim_value for d in dims], dtype=np.int64)) * itemsize
        else:
            sizes[name] = None
    largest = max((size for size in sizes.values() if size is not None), default=4)
    return {name: largest if size is None else size for name, size in sizes.items()}


def _itemsize(info: onnx.ValueInfoProto) -> int:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 4


def plan(sizes: Mapping[str, int], budget: int = DEFAULT_BUDGET, *, max_rows: int | None = None) -> ExposurePlan:
    """Tensors (in the given order) cut into groups of at most ``budget`` bytes per sample, and the samples per
    run of each group (at least 1: a tensor larger than the budget is its own group, one sample at a time)."""
    groups: list[list[str]] = []
    totals: list[int] = []
    for name, size in sizes.items():
        if groups and totals[-1] + size <= budget:
            groups[-1].append(name)
            totals[-1] += size
        else:
            groups.append([name])
            totals.append(size)
    rows = [max(1, budget // max(total, 1)) for total in totals]
    if max_rows is not None:
        rows = [min(r, max_rows) for r in rows]
    return ExposurePlan(groups, rows, totals, budget)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def collect_in_passes(
    model: onnx.ModelProto,
    exposure: ExposurePlan,
    batches: Callable[[int], Iterable[np.ndarray | dict[str, np.ndarray]]],
    **options: Any,
) -> dict[str, TensorStats]:
    """Statistics of every tensor of ``exposure``'s groups: one pass over ``batches(rows)`` per group
    (``options``: :func:`edgeq.calibrate.collect.collect`'s keywords)."""
    stats: dict[str, TensorStats] = {}
    for group, rows in zip(exposure.groups, exposure.rows, strict=True):
        stats.update(collect(model, group, batches(rows), **options))
    return stats
