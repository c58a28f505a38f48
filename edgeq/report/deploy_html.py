"""The deploy report as a self-contained HTML page: FP32 vs INT8 drawn as the outputs call for, and latency.

Class scores get the seed's bar chart, detectors their boxes side by side, any other output the distribution
of its INT8 - FP32 differences. A chart that cannot be drawn becomes a line saying why; the page is always written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeq import atomic
from edgeq import labels as labels_module
from edgeq.deploy.report import LAYERS_SHOWN, BudgetFit, DeployReport, slowest_layers
from edgeq.device.batches import first
from edgeq.metrics import detection, fidelity
from edgeq.metrics.classification import is_class_scores
from edgeq.recipe import InputSpec, Recipe
from edgeq.report import charts
from edgeq.report.html import HtmlReport, HtmlSection

CHART_SAMPLES = 4
DETECTION_METRICS = frozenset({"map50", "map50_95", "box_f1"})
IMAGE_LAYOUTS = ("NCHW", "NHWC")


def _image_input(inputs: list[InputSpec], arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, str] | None:
    """The validation array and layout to draw: the model's first image input that holds images."""
    for spec in inputs:
        key = spec.name if spec.name in arrays else ("x" if len(inputs) == 1 and "x" in arrays else None)
        if spec.layout in IMAGE_LAYOUTS and key is not None and charts.is_image_batch(arrays[key], spec.layout):
            return arrays[key], spec.layout
    return None


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _detections(recipe: Recipe, fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], x: np.ndarray, layout: str,
                labels: labels_module.Labels, names: list[str]) -> HtmlSection:
    options = recipe.validation.detection
    fp32_boxes = detection.confident(fp32, options)
    with_boxes = np.flatnonzero([len(b) > 0 for b in fp32_boxes])
    picked = charts.spread(with_boxes if len(with_boxes) else np.arange(len(fp32_boxes)), CHART_SAMPLES)
    int8_boxes = detection.confident({k: v[picked] for k, v in int8.items()}, options)
    truth = None
    if isinstance(labels, dict) and "boxes" in labels:
        truth = detection.truth_boxes({k: v[picked] for k, v in labels.items()})
    png = charts.detection_chart(charts.display_images(x[picked], layout), [fp32_boxes[i] for i in picked], int8_boxes,
                                 names, truth, [int(i) for i in picked])
    counts = f"{sum(len(fp32_boxes[i]) for i in picked)} FP32 and {sum(len(b) for b in int8_boxes)} INT8 boxes"
    note = f"{counts} scoring at least {options.confidence:g} (validation.detection.confidence)" + (
        "; labels dashed" if truth is not None else "")
    return HtmlSection("FP32 vs INT8 detections", png=png, note=note)


def _class_scores(fp32: np.ndarray, int8: np.ndarray, image: tuple[np.ndarray, str] | None,
                  labels: labels_module.Labels, names: list[str]) -> HtmlSection:
    """The seed's chart on the samples FP32 and INT8 disagree about first, with their true labels."""
    picked, differ = charts.disagreements_first(fp32, int8, CHART_SAMPLES)
    class_labels = labels if isinstance(labels, np.ndarray) and labels.ndim == 1 else None
    chart = charts.score_chart(fp32, int8, [int(i) for i in picked], names, class_labels)
    images = charts.display_images(image[0][picked], image[1]) if image is not None else None
    png = charts.prediction_chart(images, chart)
    return HtmlSection("FP32 vs INT8 predictions", png=png, note=agreement_note(chart, differ, len(fp32)))


def agreement_note(chart: charts.ScoreChart, differ: int, total: int) -> str:
    """What the chart shows, in words: how many samples change their top-1 class, and which are drawn."""
    drawn = sum(panel.disagrees for panel in chart.panels)
    agree = len(chart.panels) - drawn
    values = "softmax probabilities (0..1)" if chart.probabilities else "raw scores, signed (the line marks 0)"
    if not differ:
        return f"FP32 and INT8 pick the same class for all {total} validation samples; {agree} drawn, as {values}."
    which = f"all {differ} are drawn" if drawn == differ else f"{drawn} of them are drawn"
    then = f", then {agree} where they agree" if agree else ""
    return (f"FP32 and INT8 pick different classes for {differ} of {total} validation samples: {which} first "
            f"(titles in red){then}; as {values}.")


def prediction_section(recipe: Recipe, metric: str, validation: Path, pulled: Path) -> HtmlSection:
    """FP32 vs INT8 on a few validation samples, drawn as the model's outputs call for; never raises."""
    try:
        fp32, int8 = _load(pulled / "outputs.fp32.npz"), _load(pulled / "outputs.int8.npz")
        arrays = _load(validation)
        labels = labels_module.from_arrays(arrays)
        names = [str(c) for c in arrays.get("classes", [])]
        image = _image_input(recipe.inputs, arrays)
        if metric in DETECTION_METRICS and image is not None:
            return _detections(recipe, fp32, int8, *image, labels, names)
        name = recipe.validation.output if recipe.validation.output in fp32 else next(iter(fp32))
        if is_class_scores(fp32[name]):
            return _class_scores(fp32[name], int8[name], image, labels, names)
        png = charts.error_chart(fp32, int8, fidelity.per_output(fp32, int8))
        return HtmlSection("INT8 - FP32, output by output", png=png,
                           note=f"{len(first(fp32))} validation samples; every value of every output")
    except Exception as exc:  # noqa: BLE001 (a chart is never worth a failed deploy: say why it is missing)
        return HtmlSection("FP32 vs INT8", note=f"no chart could be drawn: {exc.__class__.__name__}: {exc}")


def fit_section(fit: BudgetFit) -> HtmlSection:
    """What the budget fit changed, as the terminal's table says it (:func:`edgeq.report.deploy_view.fit_view`)."""
    rows = [("fit", fit.outcome), ("predicted drop once fitted", f"{fit.predicted_drop:.2f} points"), *fit.changes()]
    return HtmlSection("Budget fit", rows)


def write_deploy_html(report: DeployReport, recipe: Recipe, validation: Path, pulled: Path, path: Path) -> None:
    """Render ``report`` with samples from ``validation`` (.npz) and the outputs pulled into ``pulled``."""
    ev, bench = report.evaluation, report.bench
    slowest = slowest_layers(bench.int8, report.build.engine.layers, LAYERS_SHOWN)
    accuracy = [("metric", ev.metric), ("FP32", f"{ev.fp32:.2f}"), ("INT8", f"{ev.int8:.2f}"),
                ("drop (points)", f"{ev.drop:.2f}"), ("top-1 agreement", f"{100 * ev.top1_agreement:.2f}%"),
                ("cosine", f"{ev.cosine:.5f}")]
    before, after = ev.details.get("fp32", {}), ev.details.get("int8", {})
    accuracy += [(key, f"FP32 {before[key]:.3f}, INT8 {value:.3f}" if key in before else f"INT8 {value:.3f}")
                 for key, value in after.items()]
    sections = [
        HtmlSection("Device", [("host", report.host), ("module", report.probe.module or "-"),
                               ("TensorRT", report.probe.tensorrt_version or "-"),
                               ("backend", f"{report.build.backend} {report.build.backend_version}")]),
        HtmlSection("Accuracy on the device", accuracy),
        *([fit_section(report.fit)] if report.fit else []),
        prediction_section(recipe, ev.metric, validation, pulled),
        HtmlSection("Latency", [(name, f"median {s.median_ms:.3f} ms, p99 {s.p99_ms:.3f} ms")
                                for name, s in (("FP32", bench.fp32), ("INT8", bench.int8))],
                    png=charts.latency_histogram({"FP32": bench.fp32.samples_ms, "INT8": bench.int8.samples_ms})),
        *([HtmlSection("Slowest INT8 engine layers (trtexec profile run)",
                       [(name, f"{precision}, {mean_ms:.3f} ms, {share:.1f}% of the time")
                        for name, precision, mean_ms, share in slowest])] if slowest else []),
        HtmlSection("Gates", [(g.name, g.describe()) for g in report.gates]),
    ]
    verdict = "PASS" if report.passed else "FAIL: the previous engine stays current"
    page = HtmlReport(f"edgeq deploy: {report.recipe} on {report.host} ({report.target})", verdict, report.passed, sections)
    atomic.write_text(path, page.render())
