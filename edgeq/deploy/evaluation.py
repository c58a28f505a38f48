"""The device's own accuracy: the recipe's metric on the outputs the device computed, FP32 vs INT8."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgeq import metrics
from edgeq.device.batches import first
from edgeq.device.compare import compare_outputs
from edgeq.recipe import Recipe


class Evaluation(BaseModel):
    """FP32 and INT8 metric on the device's run over the validation set, and how the outputs compare."""

    model_config = ConfigDict(frozen=True)

    metric: str
    samples: int
    fp32: float
    int8: float
    drop: float  # points lost, fp32 - int8
    top1_agreement: float  # 0..1
    cosine: float
    fp32_ms_per_sample: float
    int8_ms_per_sample: float
    details: dict[str, dict[str, float]] = {}  # secondary numbers per model (mAP@0.5, SNR)


def score(
    recipe: Recipe, fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], labels: metrics.Labels, timings: dict[str, float]
) -> Evaluation:
    """Apply the recipe's metric to both models' outputs (every output, by name)."""
    metric = metrics.load(recipe, labels)
    scores = metric.compare(fp32, int8, labels)
    comparison = compare_outputs(first(fp32), first(int8))
    return Evaluation(
        metric=metric.name,
        samples=len(first(fp32)),
        fp32=scores.fp32,
        int8=scores.int8,
        drop=scores.drop,
        top1_agreement=comparison["top1_agreement"],
        cosine=comparison["cosine"],
        fp32_ms_per_sample=timings["fp32"],
        int8_ms_per_sample=timings["int8"],
        details=scores.details,
    )
