"""A cheap first ranking of layer sensitivity, from what the statistics pass already measured.

Quantizing a layer adds noise to its inputs: rounding noise (scale^2 / 12 per value inside the range) and
clipping error ((|x| - amax)^2 beyond it) on each activation, read off the |x| histogram; and the rounding
error of its per-channel INT8 weights, computed from the weights. The proxy of a layer is the sum of these
noise-to-signal ratios. No model runs: :func:`edgeq.calibrate.sensitivity.rank_layers` then measures only the
layers the proxy ranks highest.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.calibrate.qdq import QuantizedLayer, weight_scales
from edgeq.calibrate.stats import TensorStats
from edgeq.graph import GraphIndex


def activation_noise(stats: TensorStats, amax: float) -> float:
    """Noise-to-signal ratio of symmetric INT8 with range ``amax`` on the values the histogram counted."""
    centers = (stats.edges[:-1] + stats.edges[1:]) / 2
    counts = stats.hist.astype(np.float64)
    signal = float(np.sum(counts * centers**2))
    if signal <= 0.0 or amax <= 0.0:
        return 0.0
    scale = amax / 127.0
    inside = centers <= amax
    noise = float(np.sum(counts[inside]) * scale**2 / 12.0 + np.sum(counts[~inside] * (centers[~inside] - amax) ** 2))
    return noise / signal


def weight_noise(weights: np.ndarray, axis: int) -> float:
    """Noise-to-signal ratio of the INT8 weights :func:`edgeq.calibrate.qdq.weight_scales` gives (axis -1: per tensor)."""
    w = weights.astype(np.float64)
    scales = weight_scales(weights, axis).astype(np.float64)
    if axis >= 0:
        scales = scales.reshape([-1 if i == axis % w.ndim else 1 for i in range(w.ndim)])
    error = w - np.clip(np.round(w / scales), -127, 127) * scales
    signal = float(np.sum(w**2))
    return float(np.sum(error**2)) / signal if signal > 0 else 0.0


def layer_proxies(
    model: onnx.ModelProto, layers: list[QuantizedLayer], stats: Mapping[str, TensorStats], amax: Mapping[str, float]
) -> dict[str, float]:
    """Layer name -> the summed noise-to-signal ratio INT8 adds to its activations and weights."""
    index = GraphIndex(model)
    proxies = {}
    for layer in layers:
        total = sum(activation_noise(stats[t], amax[t]) for t in layer.activations if t in stats and t in amax)
        for name, axis in layer.weights:
            values = index.initializers.get(name)
            if values is not None:
                total += weight_noise(numpy_helper.to_array(values), axis)
        proxies[layer.name] = total
    return proxies
