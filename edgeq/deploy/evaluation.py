"""The device's own accuracy: the recipe's metric on the scores the device computed, FP32 vs INT8."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgeq import metrics
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


def score(recipe: Recipe, fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray, timings: dict[str, float]) -> Evaluation:
    """Apply the recipe's metric to both score arrays."""
    metric = metrics.load(recipe)
    fp32_value, int8_value = metric(fp32, labels), metric(int8, labels)
    comparison = compare_outputs(fp32, int8)
    return Evaluation(
        metric=metric.name,
        samples=len(labels),
        fp32=fp32_value,
        int8=int8_value,
        drop=fp32_value - int8_value,
        top1_agreement=comparison["top1_agreement"],
        cosine=comparison["cosine"],
        fp32_ms_per_sample=timings["fp32"],
        int8_ms_per_sample=timings["int8"],
    )
