"""Masks: mean intersection over union of predicted class maps against label maps [N, H, W]."""

from __future__ import annotations

import numpy as np

from edgeq.recipe import SegmentationOptions


def class_map(output: np.ndarray, options: SegmentationOptions) -> np.ndarray:
    """[N, H, W] class indices from [N, C, H, W] scores (arg-max), [N, 1, H, W] probabilities (threshold) or [N, H, W]."""
    output = np.asarray(output)
    if output.ndim == 4 and output.shape[1] == 1:
        return (output[:, 0] >= options.threshold).astype(np.int64)
    if output.ndim == 4:
        return output.argmax(axis=1)
    if output.ndim == 3:
        return (output >= options.threshold).astype(np.int64) if output.dtype.kind == "f" else output.astype(np.int64)
    raise ValueError(f"a mask output is [N, C, H, W], [N, 1, H, W] or [N, H, W], found {list(output.shape)}")


def mean_iou(predicted: np.ndarray, labels: np.ndarray, ignore_index: int) -> float:
    """Mean over classes of intersection / union summed over all images (0..1); classes absent from both are left out."""
    predicted, labels = np.asarray(predicted, np.int64), np.asarray(labels).astype(np.int64)
    if predicted.shape != labels.shape:
        raise ValueError(f"predicted masks {list(predicted.shape)} and label masks {list(labels.shape)} differ in shape")
    valid = labels != ignore_index
    pred, true = predicted[valid], labels[valid]
    size = int(max(pred.max(initial=0), true.max(initial=0))) + 1
    confusion = np.bincount(true * size + pred, minlength=size * size).reshape(size, size)
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else 1.0
