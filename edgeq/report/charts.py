"""Charts as PNG bytes (matplotlib, no display): FP32 vs INT8 as class-score bars (the seed's chart), detector
boxes side by side, or per-output error distributions; and latency histograms."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from edgeq.metrics.detection import Boxes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_BARS = 10  # class-score bars per sample: the classes FP32 and INT8 score highest
HISTOGRAM_VALUES = 1 << 20  # differences drawn per output (an even subsample beyond this)


def _figure_png(fig: Figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def is_image_batch(x: np.ndarray, layout: str) -> bool:
    """Whether ``x`` is a batch of images in ``layout`` (1 or 3 channels) that can be shown."""
    if x.ndim != 4 or x.dtype.kind not in "fiu":
        return False
    channels = x.shape[1] if layout == "NCHW" else x.shape[3]
    return channels in (1, 3) and layout in ("NCHW", "NHWC")


def display_images(x: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """Preprocessed inputs (N,C,H,W or N,H,W,C) stretched back to 0..1 per image, as N,H,W,C for display."""
    x = x.astype(np.float64)
    images = x.transpose(0, 2, 3, 1) if layout == "NCHW" else x
    low = images.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(images.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    images = (images - low) / span
    return images[..., 0] if images.shape[-1] == 1 else images


def prediction_chart(
    images: np.ndarray | None, fp32: np.ndarray, int8: np.ndarray, classes: Sequence[str], labels: np.ndarray | None = None
) -> bytes:
    """One row per sample: the image (when there is one), then FP32 and INT8 class scores side by side (as in
    the seed); with more than :data:`MAX_BARS` classes, the ones either model scores highest."""
    plt = _pyplot()
    fp32, int8 = fp32.reshape(len(fp32), -1), int8.reshape(len(int8), -1)
    count = len(fp32)
    names = list(classes) if len(classes) == fp32.shape[1] else [str(i) for i in range(fp32.shape[1])]
    columns = 1 if images is None else 2
    ratios = [3] if images is None else [1, 3]
    fig, axes = plt.subplots(count, columns, figsize=(3 * columns + 3, 2.2 * count), squeeze=False,
                             gridspec_kw={"width_ratios": ratios})
    for row in range(count):
        bar_axis = axes[row][-1]
        truth = f"label {names[int(labels[row])]}" if labels is not None and 0 <= int(labels[row]) < len(names) else f"sample {row}"
        if images is not None:
            image_axis = axes[row][0]
            image_axis.imshow(images[row], cmap="gray" if images[row].ndim == 2 else None)
            image_axis.set_axis_off()
            image_axis.set_title(truth, fontsize=9)
        shown = np.arange(len(names))
        if len(names) > MAX_BARS:
            ranked = np.argsort(-np.maximum(fp32[row], int8[row]), kind="stable")[:MAX_BARS]
            shown = np.sort(ranked)
        positions = np.arange(len(shown))
        bar_axis.bar(positions - 0.2, fp32[row][shown], width=0.4, label="FP32")
        bar_axis.bar(positions + 0.2, int8[row][shown], width=0.4, label="INT8")
        bar_axis.set_xticks(positions, [names[i] for i in shown], fontsize=8)
        low = min(0.0, float(fp32[row][shown].min()), float(int8[row][shown].min()))
        bar_axis.set_ylim(low, max(1.0, float(fp32[row].max()), float(int8[row].max())))
        bar_axis.set_title(
            f"{truth if images is None else ''}  FP32: {names[int(fp32[row].argmax())]}  INT8: {names[int(int8[row].argmax())]}".strip(),
            fontsize=9,
        )
        if row == 0:
            bar_axis.legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)


def _draw_boxes(axis: Axes, boxes: Boxes, names: Sequence[str], color: str, style: str = "-") -> None:
    from matplotlib.patches import Rectangle

    for (x1, y1, x2, y2), cls, score in zip(boxes.xyxy, boxes.classes, boxes.scores, strict=True):
        axis.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.5, linestyle=style))
        name = names[int(cls)] if 0 <= int(cls) < len(names) else str(int(cls))
        text = name if style != "-" else f"{name} {score:.2f}"
        axis.text(x1, y1, text, color="white", fontsize=6, va="bottom", bbox={"facecolor": color, "alpha": 0.7, "pad": 1, "linewidth": 0})


def detection_chart(
    images: np.ndarray, fp32: list[Boxes], int8: list[Boxes], names: Sequence[str], truth: list[Boxes] | None = None,
    samples: Sequence[int] | None = None,
) -> bytes:
    """One row per sample (``samples``: their indices in the data set): the image with FP32's boxes and the image
    with INT8's, side by side (labels dashed)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(images), 2, figsize=(9, 4.2 * len(images)), squeeze=False)
    for row, image in enumerate(images):
        for axis, boxes, kind, color in ((axes[row][0], fp32[row], "FP32", "tab:blue"), (axes[row][1], int8[row], "INT8", "tab:orange")):
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            if truth is not None:
                _draw_boxes(axis, truth[row], names, "tab:green", "--")
            _draw_boxes(axis, boxes, names, color)
            axis.set_xlim(0, image.shape[1])
            axis.set_ylim(image.shape[0], 0)
            axis.set_axis_off()
            axis.set_title(f"sample {row if samples is None else samples[row]}: {kind}, {len(boxes)} box(es)", fontsize=9)
    fig.tight_layout()
    return _figure_png(fig)


def error_chart(fp32: Mapping[str, np.ndarray], int8: Mapping[str, np.ndarray], numbers: Mapping[str, Mapping[str, float]]) -> bytes:
    """Per output, the distribution of INT8 - FP32 over every value, with its cosine, SNR and max |difference|."""
    plt = _pyplot()
    names = [n for n in fp32 if n in int8]
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.4 * len(names)), squeeze=False)
    for axis, name in zip(axes[:, 0], names, strict=True):
        diff = (int8[name].astype(np.float64) - fp32[name].astype(np.float64)).ravel()
        if diff.size > HISTOGRAM_VALUES:
            diff = diff[:: -(-diff.size // HISTOGRAM_VALUES)]
        axis.hist(diff, bins=80, log=True)
        found = numbers.get(name, {})
        axis.set_title(
            f"{name} {list(fp32[name].shape)}: cosine {found.get('cosine', float('nan')):.5f}, "
            f"SNR {found.get('snr_db', float('nan')):.1f} dB, max |diff| {found.get('max_abs_diff', float('nan')):.3g}",
            fontsize=9,
        )
        axis.set_xlabel("INT8 - FP32")
        axis.set_ylabel("values")
    fig.tight_layout()
    return _figure_png(fig)


def latency_histogram(latencies_ms: Mapping[str, Sequence[float]]) -> bytes:
    """Overlaid latency histograms, one per named series (e.g. FP32 and INT8)."""
    plt = _pyplot()

    fig, axis = plt.subplots(figsize=(7, 3))
    every = np.concatenate([np.asarray(v, float) for v in latencies_ms.values() if len(v)]) if latencies_ms else np.zeros(1)
    bins = np.linspace(every.min(), every.max() + 1e-9, 40)
    for name, values in latencies_ms.items():
        axis.hist(values, bins=bins, alpha=0.6, label=f"{name} (median {np.median(values):.2f} ms)")
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("runs")
    axis.legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)
