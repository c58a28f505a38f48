"""Streaming per-tensor statistics: running min / max and a histogram of |x| that widens as needed.

Memory is tensors x bins, never samples x tensor sizes: each batch is folded into the running
statistics and dropped. The histogram always covers [0, R) with R a power of two strictly greater
than every |x| seen; when a larger value arrives R doubles (as often as needed) and every 2^k old
bins merge into one new bin. Because bins / R is a power of two, bin indices are computed exactly,
so the streamed histogram equals ``np.histogram(|all data|, bins, range=(0, R))`` bin for bin, and
pieces of a batch binned separately (over their own ranges, on any thread) add up to the same
histogram whatever their order.

How the values of a piece are counted level by level depends on the machine (:func:`counting`), never the
counts: where numpy sorts 16-bit integers with SIMD (AVX-512 ICL/SPR, Arm with fp16) and the fold has
several workers, by sorting the levels and searching the sorted run of each level, which numpy does
without the GIL, so pieces binned on many threads keep every core busy; elsewhere (such a sort is ~20x
slower, or one worker folds) ``np.bincount`` counts (it holds the GIL for a pass over every value, so the
fold stops scaling at a few threads).
``EDGEQ_HIST_COUNT=sort|bincount`` forces a way.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from edgeq.calibrate.threads import ThreadPlan
from edgeq.errors import InputError

DEFAULT_BINS = 2048
# values per counting step: a sort's binary searches (one per level present) cost little after 1M values; bincount's
# indices (8 bytes each) stay in cache in steps of 64K, where it counts twice as fast as in steps of 1M
_CHUNK = {"sort": 1 << 20, "bincount": 1 << 16}
COUNT_ENV = "EDGEQ_HIST_COUNT"
COUNTINGS = ("sort", "bincount")


@functools.cache
def counting() -> str:
    """How this machine counts bin levels: ``sort`` where the fold has several workers (ThreadPlan.workers with
    ONNX Runtime on every core: from 4 cores on) and numpy's int16 sort is about as fast as ``bincount`` (a SIMD
    sort: measured once, on 32K levels), else ``bincount``; ``EDGEQ_HIST_COUNT`` overrides. With one worker
    ``bincount`` holding the GIL costs nothing, and in 64K steps it counts faster than the sort (the example's
    statistics on 2 cores: 9.3-9.6 s against 10.2 s)."""
    forced = os.environ.get(COUNT_ENV)
    if forced is not None:
        if forced not in COUNTINGS:
            raise InputError(f"{COUNT_ENV}: expected one of {', '.join(COUNTINGS)}, found {forced!r}")
        return forced
    if ThreadPlan.for_machine().workers < 2:
        return "bincount"
    levels = np.random.default_rng(0).integers(2 * DEFAULT_BINS - 1, size=1 << 15).astype(np.int16)

    def seconds(step) -> float:  # the best of a few runs: a busy machine only slows some of them
        best = math.inf
        for _ in range(3):
            work = levels.copy()
            start = time.perf_counter()
            step(work)
            best = min(best, time.perf_counter() - start)
        return best

    # a SIMD sort takes about 0.7x bincount's time, a scalar one about 17x: the threshold sits far from both
    return "sort" if seconds(np.ndarray.sort) < 2 * seconds(lambda work: np.bincount(work)) else "bincount"


@dataclass
class TensorStats:
    """What was seen of one tensor: extremes, count, and the histogram of |x| over [0, hist_range)."""

    name: str
    min: float
    max: float
    count: int
    hist: np.ndarray
    hist_range: float

    @property
    def absmax(self) -> float:
        return max(-self.min, self.max, 0.0)

    @property
    def bin_width(self) -> float:
        return self.hist_range / len(self.hist)

    @property
    def edges(self) -> np.ndarray:
        """The len(hist)+1 bin edges."""
        return np.arange(len(self.hist) + 1, dtype=np.float64) * self.bin_width


def range_above(value: float) -> float:
    """The smallest power of two strictly greater than ``value`` (> 0)."""
    _, exponent = math.frexp(value)  # value = m * 2**exponent with 0.5 <= m < 1
    return math.ldexp(1.0, exponent)


_scratch = threading.local()  # one index buffer per thread and index type


def _index_buffer(dtype: np.dtype, size: int) -> np.ndarray:
    buffers = getattr(_scratch, "index", None)
    if buffers is None:
        buffers = _scratch.index = {}
    if dtype not in buffers or len(buffers[dtype]) < size:
        buffers[dtype] = np.empty(size, dtype)
    return buffers[dtype]


@dataclass
class Piece:
    """The statistics of one piece of a tensor, binned over its own range (see :func:`piece_of`)."""

    min: float
    max: float
    count: int
    range: float  # 0.0 when the piece holds only zeros (all of them in the zero slot)
    signed: np.ndarray


def piece_of(name: str, values: np.ndarray, bins: int = DEFAULT_BINS) -> Piece:
    """Extremes, count and signed histogram of ``values`` (any shape) over [0, range_above(max |x|)).

    Pieces of one tensor can be computed in any order, on any thread; :meth:`StreamingHistogram.merge`
    adds them up exactly. ``name`` names the tensor in the error raised for NaN or infinite values.
    """
    flat = np.ravel(values)
    if flat.dtype != np.float32:
        flat = flat.astype(np.float32)
    signed = np.zeros(2 * bins - 1, np.int64)
    if flat.size == 0:
        return Piece(math.inf, -math.inf, 0, 0.0, signed)
    low, high = float(flat.min()), float(flat.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(f"tensor '{name}' holds NaN or infinite values on the calibration data")
    absmax = max(-low, high)
    if absmax == 0.0:
        signed[bins - 1] = flat.size
        return Piece(low, high, flat.size, 0.0, signed)
    hist_range = range_above(absmax)
    signed += _binned(flat, np.float32(bins / hist_range), bins)  # a power of two: x * scale is exact
    return Piece(low, high, flat.size, hist_range, signed)


def _binned(flat: np.ndarray, scale: np.float32, bins: int) -> np.ndarray:
    """Slot ``bins-1+v`` counts the values with trunc(x * scale) == v (|x| * scale < bins), as :func:`counting` says."""
    way = counting()
    sort = way == "sort"
    # levels -(bins-1)..bins-1, offset by bins-1 for bincount; the searches need bins itself
    dtype = np.dtype(np.intp if not sort else np.int16 if bins <= 1 << 14 else np.int32)
    chunk = _CHUNK[way]
    buffer = _index_buffer(dtype, chunk)
    counts = np.zeros(2 * bins - 1, np.int64)
    for start in range(0, flat.size, chunk):
        part = flat[start : start + chunk]
        levels = buffer[: part.size]
        # float32 product, then truncation toward zero: |trunc(v)| == floor(|v|)
        np.multiply(part, scale, out=levels, dtype=np.float32, casting="unsafe")
        if sort:
            levels.sort()
            low, high = int(levels[0]), int(levels[-1])
            bounds = np.searchsorted(levels, np.arange(low, high + 2, dtype=dtype))
            counts[bins - 1 + low : bins + high] += np.diff(bounds)
        else:
            np.add(levels, bins - 1, out=levels)
            counts += np.bincount(levels, minlength=2 * bins - 1)
    return counts


def _rebinned(signed: np.ndarray, old_range: float, new_range: float) -> np.ndarray:
    """A signed histogram over [0, old_range) re-binned over [0, new_range) (powers of two, new >= old > 0): level v
    goes to sign(v) * (|v| >> shift), so each side's runs of 2**shift levels add up into one."""
    shift = round(math.log2(new_range / old_range))
    if shift == 0:
        return signed
    zero = len(signed) // 2  # the slot of level 0; each side has zero + 1 levels, a power of two
    merged = np.zeros_like(signed)
    if 1 << shift > zero:  # every level but the outermost run of each side is below one new bin
        merged[zero] = signed.sum()
        return merged
    group = 1 << shift
    positive = signed[zero:].reshape(-1, group).sum(axis=1)  # levels 0, 1, ... in runs
    negative = signed[zero::-1].reshape(-1, group).sum(axis=1)  # levels 0, -1, ... in runs: level 0 counted twice
    negative[0] -= signed[zero]
    merged[zero : zero + len(positive)] = positive
    merged[zero - len(negative) + 1 : zero + 1] += negative[::-1]
    return merged


class StreamingHistogram:
    """Running statistics of one tensor; ``update`` (or ``merge``) with each batch, ``result`` at the end.

    Internally the histogram is signed: 2*bins-1 slots, slot ``bins-1+v`` counting the values with
    trunc(x * bins / R) == v. The |x| histogram folds the two sides; the histogram of Relu(x) keeps the
    positive side and moves every negative value to bin 0, so a Relu output needs no pass of its own.
    """

    def __init__(self, name: str, bins: int = DEFAULT_BINS) -> None:
        if bins & (bins - 1):
            raise ValueError(f"bins must be a power of two, got {bins}")
        self.name = name
        self.bins = bins
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.signed = np.zeros(2 * bins - 1, np.int64)
        self.range = 0.0  # 0 until a non-zero value is seen; zeros wait in the zero slot meanwhile

    def update(self, values: np.ndarray) -> None:
        """Fold a batch of values (any shape) into the statistics."""
        self.merge(piece_of(self.name, values, self.bins))

    def merge(self, piece: Piece) -> None:
        """Add a piece's statistics: both sides are re-binned over the wider of the two ranges."""
        self.min, self.max = min(self.min, piece.min), max(self.max, piece.max)
        self.count += piece.count
        self.widen(max(self.range, piece.range))
        self.signed += _rebinned(piece.signed, piece.range, self.range) if piece.range else piece.signed

    def widen(self, new_range: float) -> None:
        """Re-bin to cover [0, new_range) (a power of two, not below the current range)."""
        if self.range != 0.0:
            self.signed = _rebinned(self.signed, self.range, new_range)
        self.range = new_range

    @property
    def hist(self) -> np.ndarray:
        """The histogram of |x| (``bins`` bins over [0, range))."""
        zero = self.bins - 1
        folded = self.signed[zero:].copy()
        folded[1:] += self.signed[zero - 1 :: -1]
        return folded

    def result(self) -> TensorStats:
        """The statistics so far (a tensor never seen non-zero gets range 1.0, all mass in bin 0)."""
        empty = self.count == 0
        return TensorStats(
            name=self.name,
            min=0.0 if empty else self.min,
            max=0.0 if empty else self.max,
            count=self.count,
            hist=self.hist,
            hist_range=self.range or 1.0,
        )


def _like(name: str, source: StreamingHistogram) -> StreamingHistogram:
    derived = StreamingHistogram(name, source.bins)
    derived.min, derived.max, derived.count, derived.range = source.min, source.max, source.count, source.range
    derived.signed = source.signed.copy()
    return derived


def copy_of(name: str, source: StreamingHistogram) -> StreamingHistogram:
    """Statistics of an op that only moves values (Reshape, Flatten, Transpose, ...)."""
    return _like(name, source)


def relu_of(name: str, source: StreamingHistogram) -> StreamingHistogram:
    """Statistics of Relu(x) from those of x: negatives become zeros."""
    derived = _like(name, source)
    zero = source.bins - 1
    derived.signed[zero] = source.signed[: zero + 1].sum()
    derived.signed[:zero] = 0
    if source.count:
        derived.min, derived.max = max(source.min, 0.0), max(source.max, 0.0)
    return derived


def concat_of(name: str, sources: list[StreamingHistogram]) -> StreamingHistogram:
    """Statistics of Concat(sources): the sum of their histograms on the widest range."""
    derived = StreamingHistogram(name, sources[0].bins)
    derived.range = max(s.range for s in sources)
    for source in sources:
        aligned = _like(name, source)
        aligned.widen(derived.range)
        derived.signed += aligned.signed
        derived.min, derived.max = min(derived.min, source.min), max(derived.max, source.max)
        derived.count += source.count
    return derived
