"""Validation metric of the squeezenet-digits recipe (the seed's hComputeModelAccuracy)."""

from __future__ import annotations

import numpy as np


def model_accuracy(outputs: dict[str, np.ndarray], labels: np.ndarray) -> float:
    """Top-1 accuracy in percent: how often the highest score of a row is the row's label.

    ``outputs`` maps each model output's name to its array; this model has one, the class scores
    [N, classes] (probabilities or logits). ``labels`` is [N] class indices.
    """
    scores = np.asarray(next(iter(outputs.values())))
    labels = np.asarray(labels).reshape(-1)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(f"expected scores [N, classes] and labels [N], got {scores.shape} and {labels.shape}")
    if len(labels) == 0:
        raise ValueError("no samples to score")
    return float(100.0 * np.mean(np.argmax(scores, axis=1) == labels))
