"""Charts as PNG bytes (matplotlib, no display): the seed's FP32-vs-INT8 prediction chart and latency histograms."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure_png(fig: Figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def display_images(x: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """Preprocessed inputs (N,C,H,W or N,H,W,C) stretched back to 0..1 per image, as N,H,W,C for display."""
    images = x.transpose(0, 2, 3, 1) if layout == "NCHW" else x
    low = images.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(images.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    images = (images - low) / span
    return images[..., 0] if images.shape[-1] == 1 else images


def prediction_chart(
    images: np.ndarray, fp32: np.ndarray, int8: np.ndarray, classes: Sequence[str], labels: np.ndarray | None = None
) -> bytes:
    """One row per sample: the image, then FP32 and INT8 class probabilities side by side (as in the seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(images)
    names = list(classes) or [str(i) for i in range(fp32.shape[1])]
    positions = np.arange(len(names))
    fig, axes = plt.subplots(count, 2, figsize=(9, 2.2 * count), squeeze=False, gridspec_kw={"width_ratios": [1, 3]})
    for row in range(count):
        image_axis, bar_axis = axes[row]
        image_axis.imshow(images[row], cmap="gray" if images[row].ndim == 2 else None)
        image_axis.set_axis_off()
        truth = f"label {names[int(labels[row])]}" if labels is not None else f"sample {row}"
        image_axis.set_title(truth, fontsize=9)
        bar_axis.bar(positions - 0.2, fp32[row], width=0.4, label="FP32")
        bar_axis.bar(positions + 0.2, int8[row], width=0.4, label="INT8")
        bar_axis.set_xticks(positions, names, fontsize=8)
        bar_axis.set_ylim(0, max(1.0, float(fp32[row].max()), float(int8[row].max())))
        bar_axis.set_title(
            f"FP32: {names[int(fp32[row].argmax())]}  INT8: {names[int(int8[row].argmax())]}", fontsize=9
        )
        if row == 0:
            bar_axis.legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)


def latency_histogram(latencies_ms: Mapping[str, Sequence[float]]) -> bytes:
    """Overlaid latency histograms, one per named series (e.g. FP32 and INT8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 3))
    every = np.concatenate([np.asarray(v, float) for v in latencies_ms.values() if len(v)]) if latencies_ms else np.zeros(1)
    bins = np.linspace(every.min(), every.max() + 1e-9, 40).tolist()
    for name, values in latencies_ms.items():
        axis.hist(values, bins=bins, alpha=0.6, label=f"{name} (median {np.median(values):.2f} ms)")
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("runs")
    axis.legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)
