"""How many activations one ONNX Runtime run may expose: a byte budget, met by passes and batch rows.

Exposing every activation of a large-resolution model at once makes ONNX Runtime hold all of them (PP-OCRv4
det at 736 x 736: over a gigabyte per sample). :func:`plan` sizes each tensor for one sample from shape
inference at the data's real input shapes, then cuts the tensors, in graph order, into groups whose bytes per
sample fit the budget; each group is one pass over the calibration data, with as many samples per run as
:data:`DEFAULT_RUN_BYTES` holds. A small model is one pass; a large one is several, and memory stays bounded
whatever the resolution or the sample count.
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

DEFAULT_BUDGET = 256 << 20  # bytes of exposed activations per sample in one pass (a larger tensor gets a pass of its own)
# Bytes of exposed activations per ONNX Runtime run, which sets the samples per run. The statistics hold two runs'
# outputs (one folded while the next runs) and ONNX Runtime about as much again in intermediates: on the example
# (11.7 MB exposed per sample) 4 samples per run peak at 163-220 MB, 10 at 364-405 MB (2 and 16 cores). The samples
# per run follow from the model alone, never from the machine: the activations' bits can depend on the batch size
# (ONNX Runtime's ReduceSum over the example's 10 logits, in its written-out Softmax, gives other bits at 1 sample
# a run than at 4).
DEFAULT_RUN_BYTES = 48 << 20


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


def plan(
    sizes: Mapping[str, int], budget: int = DEFAULT_BUDGET, *, run_bytes: int = DEFAULT_RUN_BYTES,
    sources: Mapping[str, list[str]] | None = None,
) -> ExposurePlan:
    """Tensors (in the given order) cut into groups of at most ``budget`` exposed bytes per sample, one pass over the
    data each, and the samples per run of each group: as many as ``run_bytes`` holds, at least 1.

    ``sources``: the tensors whose statistics follow from others' (:func:`edgeq.calibrate.collect.derivations`),
    with those others; one whose sources are all in its group is not exposed, so it costs nothing there.
    """
    groups: list[list[str]] = []
    totals: list[int] = []
    sources = sources or {}
    for name, size in sizes.items():
        derived = bool(groups) and name in sources and set(sources[name]) <= set(groups[-1])
        cost = 0 if derived else size
        if groups and totals[-1] + cost <= budget:
            groups[-1].append(name)
            totals[-1] += cost
        else:
            groups.append([name])
            totals.append(size)
    rows = [max(1, run_bytes // max(total, 1)) for total in totals]
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
