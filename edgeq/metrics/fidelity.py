"""How closely one model's outputs follow another's, output by output: cosine similarity and SNR."""

from __future__ import annotations

import math

import numpy as np

from edgeq.device.compare import cosine


def snr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-noise ratio of ``candidate`` against ``reference`` in dB (inf when identical)."""
    a, b = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    noise = float(np.sum((a - b) ** 2))
    signal = float(np.sum(a**2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def per_output(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """For each output both have: cosine, SNR (dB) and max absolute difference."""
    result = {}
    for name in reference:
        if name not in candidate:
            continue
        a, b = np.asarray(reference[name]), np.asarray(candidate[name])
        if a.shape != b.shape:
            raise ValueError(f"output {name!r}: shapes differ, {list(a.shape)} vs {list(b.shape)}")
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        result[name] = {"cosine": min(max(cosine(a, b), -1.0), 1.0), "snr_db": snr_db(a, b), "max_abs_diff": float(diff.max()) if diff.size else 0.0}
    return result
