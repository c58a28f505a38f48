"""The deploy report as a self-contained HTML page, with the seed's FP32-vs-INT8 chart and latency histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeq import atomic
from edgeq.deploy.report import DeployReport
from edgeq.recipe import InputSpec
from edgeq.report import charts
from edgeq.report.html import HtmlReport, HtmlSection

CHART_SAMPLES = 4
IMAGE_LAYOUTS = ("NCHW", "NHWC")


def _image_input(inputs: list[InputSpec], stored: list[str]) -> tuple[str, str] | None:
    """The validation array and layout to draw: the first image input (NCHW or NHWC) of the model."""
    for spec in inputs:
        if spec.layout in IMAGE_LAYOUTS:
            key = spec.name if spec.name in stored else ("x" if len(inputs) == 1 and "x" in stored else None)
            if key is not None:
                return key, spec.layout
    return None


def write_deploy_html(report: DeployReport, validation: Path, scores: Path, inputs: list[InputSpec], path: Path) -> None:
    """Render ``report`` with sample images from ``validation`` (.npz) and the pulled scores in ``scores``; the
    prediction chart draws the model's first image input (none when no input is an image)."""
    fp32, int8 = np.load(scores / "scores.fp32.npy"), np.load(scores / "scores.int8.npy")
    picked = np.linspace(0, len(fp32) - 1, min(CHART_SAMPLES, len(fp32))).astype(int)  # spread over the classes
    with np.load(validation) as data:
        image = _image_input(inputs, list(data.files))
        images = charts.display_images(data[image[0]][picked], image[1]) if image else None
        labels = data["labels"][picked] if "labels" in data.files else None
        classes = [str(c) for c in data["classes"]] if "classes" in data.files else []
    fp32, int8 = fp32[picked], int8[picked]
    ev, bench = report.evaluation, report.bench
    chart = [HtmlSection("FP32 vs INT8 predictions", png=charts.prediction_chart(images, fp32, int8, classes, labels))
             ] if images is not None else []
    sections = [
        HtmlSection("Device", [("host", report.host), ("module", report.probe.module or "-"),
                               ("TensorRT", report.probe.tensorrt_version or "-"),
                               ("backend", f"{report.build.backend} {report.build.backend_version}")]),
        HtmlSection("Accuracy on the device", [("metric", ev.metric), ("FP32", f"{ev.fp32:.2f}"), ("INT8", f"{ev.int8:.2f}"),
                                               ("drop (points)", f"{ev.drop:.2f}"),
                                               ("top-1 agreement", f"{100 * ev.top1_agreement:.2f}%"),
                                               ("cosine", f"{ev.cosine:.5f}")]),
        *chart,
        HtmlSection("Latency", [(name, f"median {s.median_ms:.3f} ms, p99 {s.p99_ms:.3f} ms")
                                for name, s in (("FP32", bench.fp32), ("INT8", bench.int8))],
                    png=charts.latency_histogram({"FP32": bench.fp32.samples_ms, "INT8": bench.int8.samples_ms})),
        HtmlSection("Gates", [(g.name, g.describe()) for g in report.gates]),
    ]
    verdict = "PASS" if report.passed else "FAIL: the previous engine stays current"
    page = HtmlReport(f"edgeq deploy: {report.recipe} on {report.host} ({report.target})", verdict, report.passed, sections)
    atomic.write_text(path, page.render())
