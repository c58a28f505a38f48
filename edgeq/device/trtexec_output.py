"""Parsers for what trtexec writes (trt-jetson-facts.md §6.2 console output, §6.3 JSON exports)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .latency import latency_stats
from .report import LatencyStats, LayerPlacement, LayerTime
from .trt_version import TrtVersion

_LOG_PREFIX = re.compile(r"^\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\] \[([VIWEF])\] (.*)$")
_STATUS = re.compile(r"^&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT v\d+\](?: \[b\d+\])? # (.*)$")
_MISSING_SCALE = re.compile(r"Missing scale and zero-point for tensor (.+?), expect fall back")
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\)) = ([-+\d.eE]+) ms")


@dataclass
class TrtexecLog:
    """What a trtexec run's console log says: version, command, PASSED/FAILED, warnings and errors."""

    version: Optional[TrtVersion] = None
    command: Optional[str] = None
    status: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    missing_scales: List[str] = field(default_factory=list)


def parse_log(text: str) -> TrtexecLog:
    log = TrtexecLog(version=TrtVersion.from_log(text))
    for line in text.splitlines():
        line = line.rstrip()
        status = _STATUS.match(line)
        if status:
            log.status = status.group(1) if status.group(1) != "RUNNING" else log.status
            log.command = status.group(2)
            continue
        prefixed = _LOG_PREFIX.match(line)
        if not prefixed:
            continue
        severity, message = prefixed.groups()
        if severity == "W":
            if message not in log.warnings:
                log.warnings.append(message)
            missing = _MISSING_SCALE.search(message)
            if missing and missing.group(1) not in log.missing_scales:
                log.missing_scales.append(missing.group(1))
        elif severity in "EF":
            log.errors.append(message)
    return log


@dataclass
class PerformanceSummary:
    """The ``=== Performance summary ===`` block: throughput (qps) and per-section ms statistics."""

    throughput_qps: Optional[float]
    sections: Dict[str, Dict[str, float]]


def parse_performance_summary(text: str) -> Optional[PerformanceSummary]:
    """Sections are keyed by their title (``Latency``, ``GPU Compute Time``...), stats by min/max/mean/median/p90..."""
    start = text.find("=== Performance summary ===")
    if start < 0:
        return None
    throughput = None
    sections: Dict[str, Dict[str, float]] = {}
    for raw in text[start:].splitlines()[1:]:
        prefixed = _LOG_PREFIX.match(raw.rstrip())
        line = prefixed.group(2) if prefixed else raw.strip()
        if line.startswith("==="):
            break
        title, _, rest = line.partition(": ")
        if title == "Throughput":
            throughput = float(rest.split()[0])
            continue
        stats = {}
        for name, percentile, value in _STAT.findall(rest):
            stats[f"p{float(percentile):g}" if percentile else name] = float(value)
        if stats:
            sections[title] = stats
    return PerformanceSummary(throughput, sections)


def latencies_from_times(times: List[Dict[str, Any]], skip: int = 0) -> List[float]:
    """Per-inference ``latencyMs`` from an --exportTimes array, dropping the first ``skip`` (warm-up) entries."""
    return [float(entry["latencyMs"]) for entry in times[skip:]]


def parse_profile(profile: List[Dict[str, Any]]) -> List[LayerTime]:
    """--exportProfile: ``[{"count": N}, {"name", "timeMs", "averageMs", "medianMs", "percentage"}, ...]``, slowest first."""
    layers = [
        LayerTime(e["name"], float(e["timeMs"]), float(e["averageMs"]), float(e.get("medianMs", e["averageMs"])),
                  float(e["percentage"]))
        for e in profile if "name" in e
    ]
    return sorted(layers, key=lambda layer: layer.time_ms, reverse=True)


def bench_stats(times: List[Dict[str, Any]], log: str, profile: Optional[List[Dict[str, Any]]], warmup: int,
                batch: int) -> LatencyStats:
    """A trtexec benchmark's latencies (``--exportTimes``, the first ``warmup`` dropped), its GPU compute median (the
    log's performance summary) and each layer's time (``--exportProfile`` of the profile run, when there is one)."""
    stats = latency_stats(latencies_from_times(times, skip=warmup), batch, "trtexec --exportTimes")
    summary = parse_performance_summary(log)
    stats.gpu_compute_median_ms = summary.sections.get("GPU Compute Time", {}).get("median") if summary else None
    stats.layers = parse_profile(profile) if profile else []
    return stats


def precision_of(format_datatype: str) -> Optional[str]:
    """``Int8 NC/32HW32`` -> int8, ``Half ...`` -> fp16, ``Row major linear FP32`` -> fp32."""
    text = format_datatype.lower()
    for keys, precision in ((("int8",), "int8"), (("fp8",), "fp8"), (("bf16",), "bf16"),
                            (("half", "fp16"), "fp16"), (("float", "fp32"), "fp32"), (("int32",), "int32"),
                            (("int64",), "int64"), (("bool",), "bool")):
        if any(k in text for k in keys):
            return precision
    return None


@dataclass
class LayerInfo:
    layers: List[LayerPlacement]
    io_tensors: List[str]


def parse_layer_info(info: Dict[str, Any], dla_requested: bool) -> LayerInfo:
    """--exportLayerInfo (IEngineInspector JSON, detailed verbosity): precision from the first output's
    ``Format/Datatype``; with a DLA build, ``DLA`` layer types and ``{ForeignNode[...]}`` layers count as DLA
    (exact strings not verified on a device). I/O tensors under ``Bindings`` (8.x-10.x) or ``I/O Tensors`` (11.x)."""
    layers = []
    for layer in info.get("Layers", []):
        if isinstance(layer, str):  # layer_names_only verbosity
            layers.append(LayerPlacement(layer, None, None, "GPU"))
            continue
        name = str(layer.get("Name", ""))
        layer_type = layer.get("LayerType")
        outputs = layer.get("Outputs") or [{}]
        on_dla = dla_requested and ("DLA" in str(layer_type).upper() or "ForeignNode" in name)
        layers.append(LayerPlacement(name, layer_type, precision_of(str(outputs[0].get("Format/Datatype", ""))),
                                     "DLA" if on_dla else "GPU"))
    io = info.get("Bindings", info.get("I/O Tensors", []))
    return LayerInfo(layers, [t if isinstance(t, str) else str(t.get("Name")) for t in io])
