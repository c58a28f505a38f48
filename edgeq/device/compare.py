"""Comparing two models' outputs: top-1 agreement and cosine similarity (numpy only, Python 3.8+)."""

import math
from typing import Dict

import numpy as np


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Share (0..1) of samples whose arg-max class is the same in both outputs (N x classes)."""
    ref = reference.reshape(len(reference), -1)
    cand = candidate.reshape(len(candidate), -1)
    return float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1))) if len(ref) else float("nan")


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Cosine similarity of the two outputs, flattened; 1.0 when both are all zeros.

    The same bits on every CPU: the sums are numpy's pairwise float64 sums, whose order is fixed, where ``np.dot``
    and ``np.linalg.norm`` call BLAS, whose kernels sum in an order that depends on the CPU (OpenBLAS's AVX2 and
    AVX-512 kernels differ in the last digits on 65536 values).
    """
    a = reference.astype(np.float64).ravel()
    b = candidate.astype(np.float64).ravel()
    norm = math.sqrt(float(np.sum(a * a))) * math.sqrt(float(np.sum(b * b)))
    if norm == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.sum(a * b)) / norm


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
