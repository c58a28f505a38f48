"""Latency statistics from per-inference times."""

from __future__ import annotations

import time
from typing import Callable, List, Sequence

import numpy as np

from . import progress
from .report import LatencyStats


def latency_stats(samples_ms: Sequence[float], batch: int, source: str) -> LatencyStats:
    times = np.asarray(samples_ms, dtype=np.float64)
    if times.size == 0:
        raise ValueError("no latency samples")
    mean = float(times.mean())
    return LatencyStats(
        iterations=int(times.size),
        batch=batch,
        min_ms=float(np.min(times)),
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        p99_ms=float(np.percentile(times, 99)),
        mean_ms=mean,
        max_ms=float(np.max(times)),
        throughput_per_s=batch * 1000.0 / mean if mean > 0 else float("inf"),
        source=source,
        samples_ms=[round(float(t), 4) for t in times],
    )


def time_calls(call: Callable[[], object], warmup: int, iterations: int) -> List[float]:
    """Wall-clock milliseconds of ``iterations`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
        progress.advance()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000.0)
        progress.advance()
    return samples
