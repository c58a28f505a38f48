"""Cosine similarity and top-1 agreement of two outputs (edgeq.device.compare)."""

from __future__ import annotations

import math

import numpy as np

from edgeq.device.compare import COSINE_BLOCK, compare_outputs, cosine


def test_cosine_over_several_blocks_is_the_exactly_rounded_value_to_a_few_ulp() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal(2 * COSINE_BLOCK + 12345).astype(np.float32)
    b = (a + rng.standard_normal(a.size).astype(np.float32) * 0.01).astype(np.float32)
    x, y = a.astype(np.float64), b.astype(np.float64)  # products of float32 values are exact in float64
    exact = math.fsum(x * y) / (math.sqrt(math.fsum(x * x)) * math.sqrt(math.fsum(y * y)))
    got = cosine(a.reshape(1, -1, 1), b.reshape(1, -1, 1))  # any shape: flattened
    assert abs(got - exact) <= 8 * math.ulp(exact)
    assert 0.9999 < got < 1.0


def test_cosine_of_zeros_and_of_opposite_outputs() -> None:
    zeros = np.zeros((3, 4), np.float32)
    ones = np.ones((3, 4), np.float32)
    assert cosine(zeros, zeros) == 1.0
    assert cosine(zeros, ones) == 0.0
    assert cosine(ones, -ones) == -1.0
    assert compare_outputs(ones, -ones) == {"top1_agreement": 1.0, "cosine": -1.0, "max_abs_diff": 2.0}
