"""Range methods, the entropy search above all, against slow references written from the description."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeq.calibrate.ranges import amax_of, entropy_threshold_bin
from edgeq.calibrate.stats import StreamingHistogram, TensorStats


def reference_entropy_bin(hist: np.ndarray, start_bin: int = 128, levels: int = 128) -> int:
    """NVIDIA's KL search, straight from the published description, one candidate and one bin at a time."""
    bins = [float(v) for v in hist]
    bins[0] = bins[1]  # as pytorch-quantization: ignore the zero spike
    best_bin, best_kl = len(bins), math.inf
    for i in range(start_bin, len(bins) + 1):
        # P: the first i bins, with every outlier count added to the last of them.
        p = bins[:i]
        p[i - 1] += sum(bins[i:])
        # Q: bins[:i] merged into `levels` levels (bin j -> level j*levels//i), each level's count spread
        # evenly over its non-empty bins, then expanded back to i bins.
        level_sum = [0.0] * levels
        level_nonzero = [0] * levels
        for j in range(i):
            level = j * levels // i
            level_sum[level] += bins[j]
            if bins[j] > 0:
                level_nonzero[level] += 1
        q = [0.0] * i
        for j in range(i):
            if bins[j] > 0:
                level = j * levels // i
                q[j] = level_sum[level] / level_nonzero[level]
        p_total, q_total = sum(p), sum(q)
        kl = 0.0
        for pj, qj in zip(p, q, strict=True):
            if pj == 0:
                continue
            if qj == 0:
                kl = math.inf
                break
            kl += (pj / p_total) * math.log((pj / p_total) / (qj / q_total))
        if kl <= best_kl:  # the last minimum wins
            best_bin, best_kl = i, kl
    return best_bin


def _stats(values: np.ndarray, bins: int) -> TensorStats:
    stream = StreamingHistogram("t", bins)
    stream.update(values.astype(np.float32))
    return stream.result()


@pytest.mark.parametrize("bins", [256, 512])
def test_entropy_matches_reference_on_gaussian(bins: int) -> None:
    stats = _stats(np.random.default_rng(0).standard_normal(200_000), bins)
    assert entropy_threshold_bin(stats.hist) == reference_entropy_bin(stats.hist)


def test_entropy_matches_reference_on_laplacian_with_outliers() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.laplace(scale=0.5, size=100_000), rng.uniform(20, 60, size=30) * rng.choice([-1, 1], 30)])
    stats = _stats(values, 512)
    expected = reference_entropy_bin(stats.hist)
    assert entropy_threshold_bin(stats.hist) == expected
    # The outliers are clipped: the threshold sits well below max |x|.
    assert expected * stats.bin_width < 0.5 * stats.absmax


def test_entropy_matches_reference_on_relu_output() -> None:
    rng = np.random.default_rng(5)
    values = np.maximum(rng.standard_normal(100_000) * 2 + 0.3, 0)
    stats = _stats(values, 256)
    assert entropy_threshold_bin(stats.hist) == reference_entropy_bin(stats.hist)


def test_entropy_matches_reference_at_2048_bins() -> None:
    values = np.random.default_rng(7).laplace(size=300_000)
    stats = _stats(values, 2048)
    assert entropy_threshold_bin(stats.hist) == reference_entropy_bin(stats.hist)


def test_minmax_is_max_abs() -> None:
    values = np.array([-3.5, 0.25, 2.0], np.float32)
    assert amax_of(_stats(values, 2048), "minmax") == 3.5


def test_percentile_is_the_bin_edge_where_the_share_is_reached() -> None:
    values = np.arange(1, 10_001, dtype=np.float32) / 1000.0  # 0.001 .. 10.0, uniform
    stats = _stats(values, 2048)
    amax = amax_of(stats, "percentile", 99.0)
    assert 9.9 <= amax <= 9.9 + stats.bin_width
    assert amax_of(stats, "percentile", 100.0) == 10.0  # capped at max |x|


def test_mse_matches_brute_force_search() -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.standard_normal(50_000), [9.0, -8.5]])
    stats = _stats(values, 512)
    centres = (np.arange(512) + 0.5) * stats.bin_width
    best, best_err = None, math.inf
    for i in range(128, 513):
        amax = i * stats.bin_width
        scale = amax / 127
        err = sum(c * (x - min(round(x / scale), 127) * scale) ** 2 for c, x in zip(stats.hist, centres, strict=True) if c)
        if err < best_err:
            best, best_err = amax, err
    assert amax_of(stats, "mse") == pytest.approx(best)
    assert best < 0.9 * stats.absmax  # the two outliers are clipped


def test_every_method_stays_within_max_abs_and_zero_tensors_get_zero() -> None:
    stats = _stats(np.random.default_rng(2).standard_normal(10_000), 2048)
    zeros = _stats(np.zeros(100), 2048)
    for method in ("entropy", "minmax", "percentile", "mse"):
        assert 0 < amax_of(stats, method) <= stats.absmax
        assert amax_of(zeros, method) == 0.0
    with pytest.raises(ValueError):
        amax_of(stats, "kl")


def test_entropy_falls_back_to_the_percentile_when_kl_clips_more_than_outliers() -> None:
    # A normalised digit image: three quarters background at -0.83, a quarter ink at +1.89.
    rng = np.random.default_rng(4)
    values = np.where(rng.random(400_000) < 0.75, -0.829, 1.889).astype(np.float32)
    stats = _stats(values, 2048)
    kl_only = entropy_threshold_bin(stats.hist) * stats.bin_width
    assert kl_only < 1.0  # the bare KL search clips all the ink ...
    amax = amax_of(stats, "entropy")
    assert np.mean(np.abs(values) > amax) <= 1e-4 and amax <= stats.absmax  # ... the entropy method keeps it


def test_entropy_keeps_the_kl_threshold_when_it_clips_only_outliers() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.laplace(scale=0.5, size=100_000), rng.uniform(20, 60, size=30) * rng.choice([-1, 1], 30)])
    stats = _stats(values, 512)
    assert amax_of(stats, "entropy") == entropy_threshold_bin(stats.hist) * stats.bin_width < 0.5 * stats.absmax
