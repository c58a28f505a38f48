"""Rich renderables for deploy and smoke reports."""

from __future__ import annotations

from collections import Counter

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from edgeq.deploy.report import LAYERS_SHOWN, BudgetFit, DeployReport, slowest_layers
from edgeq.deploy.wire import LatencyStats, LayerPlacement, SmokeReport
from edgeq.device.int8_arith import describe
from edgeq.report.safe_text import path_line, plain


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def _kv(title: str, rows: list[tuple[str, str]]) -> Table:
    """A titled key/value table; titles and values hold device text, shown literally."""
    table = Table(title=plain(title), title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, plain(value))
    return table


def verdict(passed: bool, activated: bool) -> Text:
    if passed and activated:
        return Text("PASS: the new engine is now current", style="bold green")
    if passed:
        return Text("PASS", style="bold green")
    return Text("FAIL: a gate failed; the previous engine stays current", style="bold red")


def _latency_table(fp32: LatencyStats, int8: LatencyStats, speedup: float) -> Table:
    gpu = int8.gpu_compute_median_ms is not None or fp32.gpu_compute_median_ms is not None  # trtexec's own measure
    table = Table(title=f"Latency (batch {int8.batch}, {int8.iterations} runs; INT8 speed-up x{speedup:.2f})",
                  title_justify="left")
    for column in ("", "min ms", "median ms", "p90 ms", "p99 ms", "mean ms", "per second", *(["GPU compute median ms"] if gpu else [])):
        table.add_column(column, justify="right")
    for name, stats in (("FP32", fp32), ("INT8", int8)):
        compute = [] if not gpu else ["-" if stats.gpu_compute_median_ms is None else f"{stats.gpu_compute_median_ms:.3f}"]
        table.add_row(name, *(f"{v:.3f}" for v in (stats.min_ms, stats.median_ms, stats.p90_ms, stats.p99_ms, stats.mean_ms)),
                      f"{stats.throughput_per_s:.1f}", *compute)
    return table


def layer_times_table(int8: LatencyStats, placements: list[LayerPlacement]) -> Table | None:
    """The INT8 engine's slowest layers in trtexec's profile run, with the precision each was built in (None when the
    backend reported no profile)."""
    rows = slowest_layers(int8, placements, LAYERS_SHOWN)
    if not rows:
        return None
    table = Table(title=f"Slowest INT8 engine layers (trtexec profile run, {len(rows)} of {len(int8.layers)})",
                  title_justify="left")
    table.add_column("layer")
    table.add_column("precision")
    table.add_column("mean ms", justify="right")
    table.add_column("share of time", justify="right")
    for name, precision, mean_ms, share in rows:
        table.add_row(plain(name), plain(precision), f"{mean_ms:.3f}", f"{share:.1f}%")
    return table


def deploy_view(report: DeployReport) -> RenderableType:
    """The whole deploy report for a person."""
    probe, build, ev = report.probe, report.build, report.evaluation
    device = _kv(f"Device {report.host}", [
        ("module", probe.module or "unknown (not a Jetson)"),
        ("L4T / TensorRT", f"{probe.l4t or '-'} / {probe.tensorrt_version or '-'}"),
        ("compute capability / DLA", f"{probe.compute_capability or '-'} / {probe.dla_cores if probe.dla_cores is not None else '-'}"),
        ("CPU", f"{probe.cpu_model or '-'} ({probe.cpu_cores} cores)"),
        ("backend", f"{build.backend} {build.backend_version}"),
    ])
    precisions = Counter(layer.precision or "?" for layer in build.engine.layers)
    built = _kv("Engine", [
        ("engine id", report.engine_id + (" (reused: already built on this device)" if report.build_reused else "")),
        ("INT8 path", f"{report.quantization} ({'Q/DQ model' if report.quantization == 'explicit' else 'calibration cache'})"),
        ("build time", f"{build.seconds:.1f} s"),
        ("engine", f"{_mb(build.engine.artifact.size_bytes)}  sha256 {build.engine.artifact.sha256[:16]}..."),
        ("layers by precision", ", ".join(f"{k} {v}" for k, v in sorted(precisions.items())) or "not reported by the backend"),
        *([("INT8 arithmetic", describe(build.engine.int8_arithmetic))] if build.engine.int8_arithmetic else []),
        *([("INT8 kernels", build.engine.int8_kernels)] if build.engine.int8_kernels else []),
        ("build warnings", str(len(build.engine.warnings))),
    ])
    accuracy = Table(title=f"Accuracy on the device ({ev.samples} validation samples, metric {ev.metric})", title_justify="left")
    for column in ("FP32", "INT8", "drop (points)", "host prediction", "top-1 agreement", "cosine"):
        accuracy.add_column(column, justify="right")
    predicted = f"{report.predicted_drop:.2f}" if report.predicted_drop is not None else "-"
    accuracy.add_row(f"{ev.fp32:.2f}", f"{ev.int8:.2f}", f"{ev.drop:.2f}", predicted, f"{100 * ev.top1_agreement:.2f}%",
                     f"{ev.cosine:.5f}")
    gates = Table(title="Gates", title_justify="left")
    for column in ("gate", "measured", "limit", "result"):
        gates.add_column(column)
    for gate in report.gates:
        gates.add_row(gate.name, f"{gate.value:.3f} {gate.unit}", f"{gate.limit:.3f} {gate.unit}",
                      Text("pass", style="green") if gate.passed else Text("FAIL", style="bold red"))
    phases = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in report.phases.items())
    timing = _kv("Time", [
        ("phases", phases),
        ("device work / edgeq overhead", f"{report.device_seconds:.2f} s / {report.overhead_seconds:.2f} s"),
        ("sent", f"{report.transfer.files_sent} files sent, {report.transfer.files_skipped} already there, "
                 f"{_mb(report.transfer.bytes_sent)} up, {_mb(report.transfer.bytes_received)} down"),
    ])
    bench = _latency_table(report.bench.fp32, report.bench.int8, report.bench.speedup)
    layer_times = layer_times_table(report.bench.int8, build.engine.layers)
    slowest: list[RenderableType] = [layer_times, Text()] if layer_times is not None else []
    paths = [path_line(f"{name}: {report.files[key]}") for name, key in (("report", "report"), ("page", "html"))
             if key in report.files]
    fit: list[RenderableType] = [fit_view(report.fit), Text()] if report.fit else []
    return Group(device, Text(), built, Text(), *fit, accuracy, Text(), bench, Text(), *slowest, gates, Text(), timing, *paths,
                 Text(), verdict(report.passed, report.activated))


def fit_view(fit: BudgetFit) -> Table:
    """What the budget fit changed: the layers kept in float (with their sensitivity), the ranges widened, and why."""
    table = Table(title=f"Budget fit ({plain(fit.outcome)})", title_justify="left")
    for column in ("layer or tensor", "why"):
        table.add_column(column)
    for name, why in fit.changes():
        table.add_row(plain(name), why)
    table.caption = f"predicted drop once fitted: {fit.predicted_drop:.2f} points"
    table.caption_justify = "left"
    return table


def smoke_view(host: str, report: SmokeReport) -> RenderableType:
    """One device's smoke result."""
    rows = [
        ("engine", report.engine_id),
        ("backend", report.backend),
        ("samples", str(report.samples)),
        ("top-1 agreement", f"{100 * report.comparison.top1_agreement:.1f}% (min {100 * report.min_agreement:.1f}%)"),
        ("cosine", f"{report.comparison.cosine:.5f} (min {report.min_cosine})"),
        ("time", f"{report.seconds:.2f} s"),
    ]
    outcome = Text("PASS", style="bold green") if report.passed else Text("FAIL", style="bold red")
    return Group(_kv(f"Smoke test on {host}", rows), outcome)
