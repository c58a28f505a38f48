"""Class scores [N, C]: top-1 and top-5 accuracy against class-index labels [N]."""

from __future__ import annotations

import numpy as np

MAX_CLASSES = 1000  # a 2-D output wider than this is not taken for class scores


def is_class_scores(output: np.ndarray) -> bool:
    """Whether an output reads as one row of class scores per sample ([N, C] or [N, C, 1, 1])."""
    squeezed = output.reshape(output.shape[:2]) if output.ndim == 4 and output.shape[2:] == (1, 1) else output
    return squeezed.ndim == 2 and 2 <= squeezed.shape[1] <= MAX_CLASSES and output.dtype.kind == "f"


def top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` highest scores, in percent."""
    scores = np.asarray(scores).reshape(len(scores), -1)
    labels = np.asarray(labels).reshape(-1)
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} rows of scores for {len(labels)} labels")
    if not len(labels):
        return float("nan")
    k = min(k, scores.shape[1])
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(100.0 * np.mean((best == labels[:, None]).any(axis=1)))
