"""Range methods: from a tensor's streamed statistics to its symmetric INT8 range (amax).

- ``entropy``: NVIDIA's published KL-divergence search (GTC 2017 "8-bit Inference with TensorRT";
  open reference: pytorch-quantization ``calib/histogram.py``): histogram of |x|, candidate
  thresholds from bin 128 to the last bin, each candidate's distribution quantized into 128 levels;
  the threshold with the least KL(P||Q) wins (the last one on ties), amax = its upper bin edge.
  As in the reference, bin 0 takes bin 1's count so the zero spike of ReLU outputs is ignored.
  All candidates are evaluated at once from prefix sums (no Python loop over thresholds).
  KL is meant to clip rare outliers; when its threshold clips more than :data:`KL_MAX_CLIPPED` of the
  values it is not doing that (on spiky histograms, e.g. a normalised digit image, two spikes for
  background and ink, it clipped a quarter of the input and SqueezeNet's output cosine fell from
  0.99998 to 0.986), and the :data:`FALLBACK_PERCENTILE` percentile is used instead when higher.
- ``minmax``: amax = max |x|.
- ``percentile``: amax = upper edge of the bin where the |x| distribution reaches p percent.
- ``mse``: amax minimising the squared quantize-dequantize error of the histogram's bin centres.

No method returns more than max |x|, so a tensor that is all zeros gets amax 0 (which the policy
then keeps out of INT8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgeq.calibrate.portable import log
from edgeq.calibrate.stats import TensorStats

METHODS = ("entropy", "minmax", "percentile", "mse")
START_BIN = 128
LEVELS = 128  # 2**(8-1): levels of a signed 8-bit quantizer over [0, amax]
KL_MAX_CLIPPED = 1e-2  # share of the values beyond which the KL threshold is not outlier clipping
FALLBACK_PERCENTILE = 99.99  # the entropy method's range then


@dataclass(frozen=True)
class TensorRange:
    """The INT8 range of one tensor: amax (scale = amax / 127), the extremes seen, the method that chose it and why."""

    name: str
    amax: float
    min: float
    max: float
    method: str = ""
    reason: str = ""

    @property
    def scale(self) -> float:
        return self.amax / 127.0


def kl_divergences(hist: np.ndarray, start_bin: int = START_BIN, levels: int = LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate count of kept bins i (``start_bin`` to all) and its KL(P || Q) (inf where undefined), for a
    histogram of more than ``start_bin`` bins with counts beyond bin 0 (:func:`entropy_threshold_bin` checks).

    Logs come from :func:`edgeq.calibrate.portable.log`, so the divergences, and the ties among them, are the
    same bits on every CPU. Each of the ~250K chunks of the search covers one of a few thousand bin spans (a
    start bin and up to ceil(bins / levels) bins): each span's Q level and its log are computed once.
    """
    bins = np.asarray(hist, dtype=np.float64).copy()
    n = len(bins)
    candidates = np.arange(start_bin, n + 1)
    bins[0] = bins[1]
    total = bins.sum()
    kept_mass = np.concatenate(([0.0], np.cumsum(bins)))
    kept_nonzero = np.concatenate(([0], np.cumsum(bins > 0)))
    with np.errstate(invalid="ignore"):  # 0 * log(0), dropped
        xlogx = np.where(bins > 0, bins * log(bins), 0.0)
    kept_xlogx = np.concatenate(([0.0], np.cumsum(xlogx)))

    # Chunk k of candidate i holds bins j with floor(j * levels / i) == k: j in [ceil(k*i/levels), ceil((k+1)*i/levels)).
    bounds = (np.arange(levels + 1)[None, :] * candidates[:, None] + levels - 1) // levels
    width = -(-n // levels) + 1  # chunk lengths 0 .. ceil(n / levels)
    first = np.arange(n + 1)[:, None]
    last = np.minimum(first + np.arange(width)[None, :], n)
    span_mass = (kept_mass[last] - kept_mass[first]).ravel()
    span_nonzero = (kept_nonzero[last] - kept_nonzero[first]).ravel()
    # Q spreads each chunk's mass evenly over its non-empty bins: sum_j b_j log Q_j = sum_k S_k log(S_k / n_k).
    span_level = np.where(span_mass > 0, span_mass / np.maximum(span_nonzero, 1), 0.0)
    span_log = np.where(span_mass > 0, log(span_level), 0.0)
    span = bounds[:, :-1] * width + (bounds[:, 1:] - bounds[:, :-1])
    chunk_mass = span_mass[span]
    p_log_q = (chunk_mass * span_log[span]).sum(axis=1)
    kept = kept_mass[candidates]
    outliers = total - kept
    last_bin = bins[candidates - 1]
    last_q = np.where(last_bin > 0, span_level[span[:, -1]], 0.0)  # bin i-1 always falls in the last chunk
    with np.errstate(invalid="ignore"):  # 0 * log(0) and inf - inf (outliers beyond an empty last chunk): inf below
        p_log_q = p_log_q + np.where(outliers > 0, outliers * log(last_q), 0.0)
        p_last = last_bin + outliers  # the reference folds all outlier mass into bin i-1
        p_log_p = kept_xlogx[candidates - 1] + np.where(p_last > 0, p_last * log(p_last), 0.0)
        divergence = (p_log_p - p_log_q) / total + log(kept / total)
    return candidates, np.where(np.isfinite(divergence), divergence, np.inf)


def entropy_threshold_bin(hist: np.ndarray, start_bin: int = START_BIN, levels: int = LEVELS) -> int:
    """The number of kept bins i* (amax = i* x bin width) that minimises KL(P || Q) (the last one on ties)."""
    n = len(hist)
    if n <= start_bin or not np.any(hist[1:]):  # bin 0 takes bin 1's count: nothing left
        return n
    candidates, divergence = kl_divergences(hist, start_bin, levels)
    return int(candidates[len(divergence) - 1 - int(np.argmin(divergence[::-1]))])


def entropy_amax(stats: TensorStats) -> float:
    """The KL threshold; the :data:`FALLBACK_PERCENTILE` percentile if higher when KL clips over :data:`KL_MAX_CLIPPED`."""
    kept = entropy_threshold_bin(stats.hist)
    amax = kept * stats.bin_width
    total = stats.hist.sum()
    if total and stats.hist[kept:].sum() > KL_MAX_CLIPPED * total:
        return max(amax, percentile_amax(stats, FALLBACK_PERCENTILE))
    return amax


def percentile_amax(stats: TensorStats, percentile: float) -> float:
    total = stats.hist.sum()
    if total == 0:
        return 0.0
    cdf = np.cumsum(stats.hist) / total
    index = int(np.searchsorted(cdf, percentile / 100.0))
    return min(index + 1, len(stats.hist)) * stats.bin_width


def mse_amax(stats: TensorStats, start_bin: int = START_BIN, block: int = 128) -> float:
    counts = stats.hist.astype(np.float64)
    used = np.nonzero(counts)[0]
    if used.size == 0:
        return 0.0
    centres = (used + 0.5) * stats.bin_width
    weights = counts[used]
    candidates = np.arange(start_bin, len(counts) + 1) * stats.bin_width
    errors = np.empty(len(candidates))
    for first in range(0, len(candidates), block):
        amax = candidates[first : first + block, None]
        scale = amax / 127.0
        restored = np.clip(np.rint(centres[None, :] / scale), -128, 127) * scale
        errors[first : first + block] = ((centres[None, :] - restored) ** 2 * weights[None, :]).sum(axis=1)
    return float(candidates[int(np.argmin(errors))])


def amax_of(stats: TensorStats, method: str, percentile: float = 99.99) -> float:
    """amax of one tensor by ``method`` (one of :data:`METHODS`), capped at max |x|."""
    if method == "entropy":
        amax = entropy_amax(stats)
    elif method == "minmax":
        amax = stats.absmax
    elif method == "percentile":
        amax = percentile_amax(stats, percentile)
    elif method == "mse":
        amax = mse_amax(stats)
    else:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    return min(amax, stats.absmax)


def compute_ranges(
    stats: Mapping[str, TensorStats], method: str, percentile: float = 99.99, reason: str = ""
) -> dict[str, TensorRange]:
    """Every tensor's range by ``method`` (``reason``: why that method, for the report; default ``--method <method>``)."""
    why = reason or f"--method {method}"
    return {name: TensorRange(name, amax_of(s, method, percentile), s.min, s.max, method, why) for name, s in stats.items()}
