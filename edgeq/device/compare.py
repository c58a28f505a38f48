"""Comparing two models' outputs: top-1 agreement and cosine similarity (numpy only, Python 3.8+)."""

import math
from typing import Dict

import numpy as np


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Share (0..1) of samples whose arg-max class is the same in both outputs (N x classes)."""
    ref = reference.reshape(len(reference), -1)
    cand = candidate.reshape(len(candidate), -1)
    return float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1))) if len(ref) else float("nan")


COSINE_BLOCK = 1 << 20  # values summed at a time: a fixed order of sums, in float64 copies of that size only


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Cosine similarity of the two outputs, flattened; 1.0 when both are all zeros.

    The same bits on every CPU: the sums are numpy's pairwise float64 sums over blocks of :data:`COSINE_BLOCK`
    values, added up in order, where ``np.dot`` and ``np.linalg.norm`` call BLAS, whose kernels sum in an order
    that depends on the CPU (OpenBLAS's AVX2 and AVX-512 kernels differ in the last digits on 65536 values).
    """
    a, b = reference.ravel(), candidate.ravel()
    aa = bb = ab = 0.0
    for start in range(0, a.size, COSINE_BLOCK):
        x = a[start : start + COSINE_BLOCK].astype(np.float64)
        y = b[start : start + COSINE_BLOCK].astype(np.float64)
        aa, bb, ab = aa + float(np.sum(x * x)), bb + float(np.sum(y * y)), ab + float(np.sum(x * y))
    norm = math.sqrt(aa * bb)  # one rounding: opposite outputs give -1.0 exactly
    if norm == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return min(1.0, max(-1.0, ab / norm))


def compare_outputs(reference: np.ndarray, candidate: np.ndarray) -> Dict[str, float]:
    """Top-1 agreement, cosine similarity and max absolute difference of one output pair."""
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    return {
        "top1_agreement": top1_agreement(reference, candidate),
        "cosine": cosine(reference, candidate),
        "max_abs_diff": float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
        if reference.size
        else 0.0,
    }
