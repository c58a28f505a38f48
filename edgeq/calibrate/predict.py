"""Predicted INT8 accuracy: the FP32 model and the Q/DQ model on the validation data, side by side."""

from __future__ import annotations

import numpy as np
import onnx

from edgeq.calibrate import activations
from edgeq.calibrate.report import PredictedAccuracy
from edgeq.device.compare import cosine, top1_agreement
from edgeq.metrics import Metric


def outputs(model: onnx.ModelProto | bytes, x: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """All graph outputs of ``model`` on ``x``, run ``batch_size`` samples at a time."""
    sess = activations.session(model)
    names = [o.name for o in sess.get_outputs()]
    parts = [activations.run(sess, x[start : start + batch_size], names) for start in range(0, len(x), batch_size)]
    return {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names)}


def compare(
    fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], labels: np.ndarray, metric: Metric, budget: float
) -> PredictedAccuracy:
    """The metric on both, the drop in points, top-1 agreement and per-output cosine similarity."""
    first = next(iter(fp32))
    fp32_value, int8_value = metric(fp32[first], labels), metric(int8[first], labels)
    drop = fp32_value - int8_value
    return PredictedAccuracy(
        metric=metric.name,
        samples=len(labels),
        fp32=fp32_value,
        int8=int8_value,
        drop=drop,
        top1_agreement=top1_agreement(fp32[first], int8[first]),
        cosine={name: cosine(fp32[name], int8[name]) for name in fp32},
        budget=budget,
        passed=drop <= budget,
    )
