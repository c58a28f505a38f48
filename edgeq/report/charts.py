"""Charts as PNG bytes (matplotlib, no display): FP32 vs INT8 as class-score bars (the seed's chart), detector
boxes side by side, or per-output error distributions; and latency histograms."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


PROBABILITY_TOLERANCE = 1e-3  # how far a row of softmax outputs may sum from 1 (float16 outputs, rounding)
PROBABILITY_AXIS = "probability (the model's softmax output)"
SCORE_AXIS = "raw score (signed, e.g. logits)"


def is_probabilities(scores: np.ndarray) -> bool:
    """Whether every row of ``scores`` [N, C] is a distribution (in 0..1, summing to 1): the model applies softmax."""
    scores = np.asarray(scores, np.float64).reshape(len(scores), -1)
    return bool(scores.size and scores.min() >= 0 and scores.max() <= 1
                and np.all(np.abs(scores.sum(axis=1) - 1) <= PROBABILITY_TOLERANCE))


def spread(indices: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` of ``indices``, evenly spread from the first to the last (over the classes, for class folders)."""
    if count <= 0 or not len(indices):
        return indices[:0]
    return indices[np.unique(np.linspace(0, len(indices) - 1, min(count, len(indices))).round().astype(int))]


def disagreements_first(fp32: np.ndarray, int8: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """Up to ``count`` sample indices to draw: those whose top-1 class differs between FP32 and INT8 first (evenly
    spread over them), then those that agree (evenly spread); and how many disagree in all."""
    differ = fp32.reshape(len(fp32), -1).argmax(axis=1) != int8.reshape(len(int8), -1).argmax(axis=1)
    shown = spread(np.flatnonzero(differ), count)
    return np.concatenate([shown, spread(np.flatnonzero(~differ), count - len(shown))]), int(differ.sum())


@dataclass(frozen=True)
class ScorePanel:
    """One sample's row of the chart: its title and the classes drawn, with FP32's and INT8's value for each."""

    sample: int  # index in the validation set
    title: str
    classes: list[int]
    fp32: list[float]
    int8: list[float]
    fp32_top1: int
    int8_top1: int
    label: int | None

    @property
    def disagrees(self) -> bool:
        return self.fp32_top1 != self.int8_top1


@dataclass(frozen=True)
class ScoreChart:
    """Everything the FP32-vs-INT8 class-score chart draws, computed apart from the drawing (and tested so)."""

    panels: list[ScorePanel]
    names: list[str]  # class names by index
    probabilities: bool  # the outputs are softmax probabilities (axis 0..1), else signed raw scores around a 0 line
    y_label: str
    y_limits: list[tuple[float, float]]  # per panel


def _shown_classes(fp32: np.ndarray, int8: np.ndarray, must: set[int]) -> list[int]:
    """All classes, or with more than :data:`MAX_BARS` the ones ``must`` names (both top-1s, the label) and then
    those either model scores highest."""
    if len(fp32) <= MAX_BARS:
        return list(range(len(fp32)))
    chosen = dict.fromkeys(sorted(must))
    for index in np.argsort(-np.maximum(fp32, int8), kind="stable"):
        if len(chosen) >= MAX_BARS:
            break
        chosen.setdefault(int(index))
    return sorted(chosen)


def score_chart(fp32: np.ndarray, int8: np.ndarray, samples: Sequence[int], classes: Sequence[str],
                labels: np.ndarray | None = None) -> ScoreChart:
    """The chart of ``samples`` (indices into ``fp32``/``int8`` [N, C] and ``labels`` [N]): per sample the class
    bars, a title with the true label (when known) and both top-1 classes, and the y axis: 0..1 for softmax
    probabilities, else signed with room around 0 (negative logits are drawn, not clipped)."""
    fp32, int8 = np.asarray(fp32).reshape(len(fp32), -1), np.asarray(int8).reshape(len(int8), -1)
    width = fp32.shape[1]
    names = [str(c) for c in classes] if len(classes) == width else [str(i) for i in range(width)]
    probabilities = is_probabilities(fp32) and is_probabilities(int8)
    panels, limits = [], []
    for sample in samples:
        a, b = fp32[sample].astype(np.float64), int8[sample].astype(np.float64)
        label = int(labels[sample]) if labels is not None and 0 <= int(labels[sample]) < width else None
        top_a, top_b = int(a.argmax()), int(b.argmax())
        shown = _shown_classes(a, b, {top_a, top_b} | ({label} if label is not None else set()))
        verdict = "top-1 differs" if top_a != top_b else "agree"
        truth = f"label {names[label]}, " if label is not None else ""
        title = f"sample {sample}: {truth}FP32 {names[top_a]}, INT8 {names[top_b]} ({verdict})"
        panels.append(ScorePanel(int(sample), title, shown, [float(a[i]) for i in shown], [float(b[i]) for i in shown],
                                 top_a, top_b, label))
        if probabilities:
            limits.append((0.0, 1.0))
        else:
            values = np.concatenate([a[shown], b[shown]])
            low, high = min(0.0, float(values.min())), max(0.0, float(values.max()))
            pad = 0.08 * max(high - low, 1e-6)
            limits.append((low - pad if low < 0 else 0.0, high + pad))
    return ScoreChart(panels, names, probabilities, PROBABILITY_AXIS if probabilities else SCORE_AXIS, limits)


def prediction_chart(images: np.ndarray | None, chart: ScoreChart) -> bytes:
    """One row per panel: the image (when there is one), then FP32 and INT8 class values side by side (as in the
    seed) over a 0 line, the y axis labelled; a panel whose top-1 classes differ is titled in red."""
    plt = _pyplot()
    count = len(chart.panels)
    columns = 1 if images is None else 2
    ratios = [3] if images is None else [1, 3]
    fig, axes = plt.subplots(count, columns, figsize=(3 * columns + 3.5, 2.4 * count), squeeze=False,
                             gridspec_kw={"width_ratios": ratios})
    for row, (panel, limits) in enumerate(zip(chart.panels, chart.y_limits, strict=True)):
        bar_axis = axes[row][-1]
        color = "tab:red" if panel.disagrees else "black"
        if images is not None:
            image_axis = axes[row][0]
            image_axis.imshow(images[row], cmap="gray" if images[row].ndim == 2 else None)
            image_axis.set_axis_off()
            label = chart.names[panel.label] if panel.label is not None else "?"
            image_axis.set_title(f"sample {panel.sample}, label {label}", fontsize=8)
        positions = np.arange(len(panel.classes))
        bar_axis.bar(positions - 0.2, panel.fp32, width=0.4, label="FP32")
        bar_axis.bar(positions + 0.2, panel.int8, width=0.4, label="INT8")
        bar_axis.axhline(0.0, color="black", linewidth=0.8)
        bar_axis.set_xticks(positions, [chart.names[i] for i in panel.classes], fontsize=8)
        bar_axis.set_ylim(*limits)
        bar_axis.set_ylabel(chart.y_label, fontsize=7)
        bar_axis.set_title(panel.title, fontsize=9, color=color)
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
    bins = np.linspace(np.min(every), np.max(every) + 1e-9, 40)
    for name, values in latencies_ms.items():
        axis.hist(values, bins=bins, alpha=0.6, label=f"{name} (median {np.median(values):.2f} ms)")
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("runs")
    axis.legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)
