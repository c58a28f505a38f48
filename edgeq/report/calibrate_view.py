"""Rich renderables for a calibration result."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from edgeq.calibrate.report import CalibrationResult
from edgeq.device.int8_arith import describe
from edgeq.report.safe_text import clean, path_line, plain

SHOWN_LAYERS = 8


def accuracy_table(result: CalibrationResult) -> Table:
    """FP32 vs INT8 on the validation data, and the budget verdict."""
    acc = result.report.accuracy
    verdict = Text("PASS", style="green") if acc.passed else Text("FAIL", style="red")
    table = Table(title=f"predicted INT8 accuracy ({acc.samples} validation samples, ONNX Runtime)", title_justify="left")
    for column in ("metric", "FP32", "INT8", "drop (points)", "budget", "top-1 agreement", "verdict"):
        table.add_column(column)
    table.add_row(acc.metric, f"{acc.fp32:.2f}", f"{acc.int8:.2f}", f"{acc.drop:+.2f}", f"{acc.budget:.2f}",
                  f"{100 * acc.top1_agreement:.1f}%", verdict)
    for name, value in acc.cosine.items():
        table.caption = (table.caption + "; " if table.caption else "cosine similarity: ") + f"{name} {value:.5f}"
    return table


def sensitivity_table(result: CalibrationResult) -> Table:
    """The most sensitive layers, each quantized alone."""
    table = Table(title="most sensitive layers (each quantized alone)", title_justify="left")
    for column in ("layer", "op", "output error", "top-1 agreement", "kept in float"):
        table.add_column(column)
    kept = set(result.report.kept_high_precision)
    for entry in result.report.sensitivity[:SHOWN_LAYERS]:
        measured = (f"{entry.score:.2e}", f"{100 * entry.top1_agreement:.1f}%") if entry.measured else ("-", "-")
        table.add_row(entry.layer, entry.op_type, *measured, "yes" if entry.layer in kept else "")
    return table


def excluded_table(result: CalibrationResult) -> Table:
    table = Table(title="tensors kept out of INT8", title_justify="left")
    table.add_column("tensor")
    table.add_column("reason", overflow="fold")
    for name, reason in result.report.excluded.items():
        table.add_row(name, reason)
    return table


def calibration_view(result: CalibrationResult) -> Group:
    """Everything a person wants after `edgeq calibrate`."""
    report = result.report
    ranges = report.ranges
    lines = [
        Text.assemble(
            "target ", (report.target, "bold"), f" (TensorRT {report.tensorrt or '-'}), method ", (report.method, "bold"),
            f", {report.calibration_samples} calibration samples",
            (" (reused: inputs unchanged)", "dim") if result.reused else f" in {report.seconds.get('total', 0):.1f} s",
        ),
        Text(f"{ranges.tensors} tensors calibrated (amax {ranges.amax_min:.3g} .. {ranges.amax_max:.3g},"
        f" median {ranges.amax_median:.3g}; {ranges.clipped} clipped below their max),"
        f" {len(report.quantized_layers)} layers quantized"),
    ]
    if report.classes:
        lines.append(plain(f"classes in label order: {', '.join(report.classes)}"))
    if report.range_methods:
        counts = ", ".join(f"{method} {entry['tensors']}" for method, entry in report.range_methods.items())
        lines.append(plain(f"range methods per tensor: {counts} (ranges.json says why for each)"))
    if report.range_choice.why:
        lines.append(plain(f"auto: {report.range_choice.why}"))
    if report.widened:
        lines.append(plain(f"widened to min-max to fit the budget: {len(report.widened)} tensor(s)"))
    memory = report.memory
    if report.statistics_reused:
        lines.append(plain(f"statistics reused from the calibration store (entry {report.statistics_key[:16]}): "
                           "the model and calibration data are those another target or command already measured"))
    if report.validation_reused:
        lines.append(plain("FP32 validation outputs reused from the calibration store: only the INT8 model ran over the"
                           " validation data"))
    if memory:
        lines.append(plain(
            f"peak memory {memory['peak_rss_mb']:.0f} MB; statistics in {memory['statistics_passes']:.0f} pass(es)"
            f" exposing {memory['exposed_mb_per_sample']:.1f} MB of activations a sample (at most"
            f" {memory['budget_mb']:.0f} MB a pass), {memory['rows_per_run']:.0f} sample(s) a run"
        ))
    if report.int8_arithmetic is not None:
        lines.append(plain(f"INT8 arithmetic of this CPU: {describe(report.int8_arithmetic)}"))
        lines.append(plain(f"the prediction ran on {report.prediction_kernels}"))
    if report.kept_high_precision:
        lines.append(plain(f"kept in float to fit the budget: {', '.join(report.kept_high_precision)}"))
    if not report.sensitivity:
        lines.append(Text("layers not ranked by sensitivity; --sensitivity (or --fit-budget) ranks them", style="dim"))
    lines += [Text(f"note: {clean(note)}", style="dim") for note in report.notes]
    parts: list[RenderableType] = [Panel(Text("\n").join(lines), title="edgeq calibrate", title_align="left"),
                                   accuracy_table(result)]
    if report.sensitivity:
        parts.append(sensitivity_table(result))
    if report.excluded:
        parts.append(excluded_table(result))
    parts.append(path_line(f"artifacts in {result.folder}:"))
    parts += [path_line(f"  {path}") for path in [*result.artifacts.files(), result.artifacts.manifest]]
    return Group(*parts)
