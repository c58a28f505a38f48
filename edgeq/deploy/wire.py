"""The wire between host and device agent, as the host reads and writes it: pydantic models of the JSON the
agent prints (and of the build options sent to it), strict about types and ranges.

Every answer is validated here before anything uses it, so a wrong answer (``{"backends": 7}`` from
``probe``, a p99 sent as a string) is a DeviceError naming the device and the field, raised before the
step that would act on it. The device builds the same JSON with the standard-library dataclasses of
:mod:`edgeq.device.report` (the agent runs on Python 3.8 without pydantic); a test keeps both in step.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeq.errors import DeviceError

Seconds = Annotated[float, Field(ge=0)]
Milliseconds = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
EngineId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
BackendName = Literal["tensorrt", "onnxruntime"]
Precision = Literal["int8", "fp16", "fp32"]
Quantization = Literal["implicit", "explicit"]


class Wire(BaseModel):
    """A JSON object crossing the wire: exact types (no "12" for 12), unknown keys ignored (an engine's
    build.json may come from an older agent)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ProbeReport(Wire):
    """What the device is and what it can run; ``missing`` names what could not be found."""

    l4t: str | None
    module: str | None
    soc: str | None
    compute_capability: str | None
    gpu_int8: bool | None
    dla_cores: Annotated[int, Field(ge=0)] | None
    tensorrt_version: str | None
    tensorrt_source: str | None
    tensorrt_python: bool
    trtexec: str | None
    cpu_model: str | None
    cpu_cores: Annotated[int, Field(ge=1)]
    memory_mb: Annotated[int, Field(ge=0)] | None
    machine: str
    python: str
    onnxruntime_version: str | None
    backends: list[BackendName]
    missing: list[str] = []


class BuildOptions(Wire):
    """How the device builds an engine: the recipe's build block, made once per deploy plan and sent as
    JSON; each backend maps it to its own settings. The file fields name host files in a deploy plan and
    their device copies once pushed (:meth:`on_device`)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    model: str
    quantization: Quantization
    precision: Precision
    qdq: str | None = None
    cache: str | None = None
    fp16_fallback: bool = False
    dla_core: Annotated[int, Field(ge=0)] | None = None
    gpu_fallback: bool = False
    workspace_mb: Annotated[int, Field(gt=0)] | None = None
    builder_optimization_level: Annotated[int, Field(ge=0, le=5)] | None = None
    shapes: dict[str, list[Annotated[int, Field(gt=0)]]] = {}
    profiles: dict[str, list[list[Annotated[int, Field(gt=0)]]]] = {}  # input -> [min, opt, max] shapes
    threads: Annotated[int, Field(ge=0)] = 0

    def on_device(self, remote: dict[str, str]) -> BuildOptions:
        """These options with each file replaced by its device path (``remote``: host path -> device path)."""
        files = {name: remote[value] for name in ("model", "qdq", "cache") if (value := getattr(self, name)) is not None}
        return self.model_copy(update=files)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


class Artifact(Wire):
    path: str
    size_bytes: Annotated[int, Field(ge=0)]
    sha256: Sha256


class LayerPlacement(Wire):
    name: str
    layer_type: str | None
    precision: str | None
    device: str


class KernelCheck(Wire):
    kernel: str
    exact: bool
    max_error: Annotated[int, Field(ge=0)]
    matches_saturation: bool


class Int8Arithmetic(Wire):
    """How the device's ONNX Runtime sums u8 x s8 products (edgeq.device.int8_arith)."""

    verdict: Literal["exact", "saturating"]
    measured: Literal["exact", "saturating"]
    forced: Literal["exact", "saturating"] | None
    checks: list[KernelCheck]
    reduced_range: KernelCheck
    cpu_flags: list[str]
    machine: str
    onnxruntime: str


class BuiltModel(Wire):
    artifact: Artifact
    seconds: Seconds
    command: list[str] | None = None
    dla_core: Annotated[int, Field(ge=0)] | None = None
    layers: list[LayerPlacement] = []
    warnings: list[str] = []
    int8_arithmetic: Int8Arithmetic | None = None
    int8_kernels: str | None = None


class BuildReport(Wire):
    """build.json: the engine, its FP32 reference, and how they were made."""

    engine_id: EngineId
    backend: BackendName
    backend_version: str
    options: BuildOptions
    engine: BuiltModel
    reference: BuiltModel
    built_at: str
    seconds: Seconds
    inputs: dict[str, list[int | str | None]] = {}
    timing_cache: str | None = None
    meta: dict[str, Any] = {}


class Comparison(Wire):
    top1_agreement: Share
    cosine: Annotated[float, Field(ge=-1.000001, le=1.000001)]  # float64 rounding may pass 1 by an ulp
    max_abs_diff: Annotated[float, Field(ge=0)]


class RunTiming(Wire):
    seconds: Seconds
    ms_per_sample: Milliseconds


class EvaluateReport(Wire):
    engine_id: EngineId
    backend: BackendName
    samples: Annotated[int, Field(ge=1)]
    batch: Annotated[int, Field(ge=1)]
    int8: RunTiming
    fp32: RunTiming
    comparison: Comparison
    scores_int8: str
    scores_fp32: str
    seconds: Seconds = 0.0


class LayerTime(Wire):
    """One engine layer's time in trtexec's profile run."""

    name: str
    time_ms: Milliseconds
    average_ms: Milliseconds
    median_ms: Milliseconds
    percentage: Annotated[float, Field(ge=0, le=100.01)]


class LatencyStats(Wire):
    """Latency of one inference of ``batch`` samples, in milliseconds (with trtexec: GPU compute and layer times)."""

    iterations: Annotated[int, Field(ge=1)]
    batch: Annotated[int, Field(ge=1)]
    min_ms: Milliseconds
    median_ms: Milliseconds
    p90_ms: Milliseconds
    p99_ms: Milliseconds
    mean_ms: Milliseconds
    max_ms: Milliseconds
    throughput_per_s: Annotated[float, Field(ge=0)]
    source: str = "wallclock"
    samples_ms: list[Milliseconds] = []
    gpu_compute_median_ms: Milliseconds | None = None
    layers: list[LayerTime] = []  # slowest first


class BenchReport(Wire):
    engine_id: EngineId
    backend: BackendName
    warmup: Annotated[int, Field(ge=0)]
    int8: LatencyStats
    fp32: LatencyStats
    speedup: Annotated[float, Field(gt=0)]
    seconds: Seconds = 0.0


class SmokeReport(Wire):
    engine_id: EngineId
    backend: BackendName
    samples: Annotated[int, Field(ge=1)]
    comparison: Comparison
    min_agreement: Share
    min_cosine: Annotated[float, Field(ge=-1, le=1)]
    passed: bool
    seconds: Seconds


class Activation(Wire):
    """One entry of the device's history.json."""

    action: Literal["activate", "rollback"]
    engine_id: EngineId
    previous: str | None
    at: str
    meta: dict[str, Any] = {}


class ActivationReport(Wire):
    current: EngineId
    previous: str | None
    changed: bool
    entry: Activation | None = None


class StatusReport(Wire):
    workdir: str
    current: str | None
    previous: str | None
    build: BuildReport | None
    engines: list[str]
    history: list[Activation]
    notes: list[str] = []  # repairs the agent made to the work folder (current, history)


class ExportReport(Wire):
    """A built engine packed for another device of the same class."""

    engine_id: EngineId
    path: str
    size_bytes: Annotated[int, Field(ge=0)]
    sha256: Sha256
    files: list[str]


class GcReport(Wire):
    """Engines removed and kept; unreferenced blobs removed; leftovers of crashed runs swept (W-relative)."""

    removed: list[str]
    kept: list[str]
    blobs_removed: list[str] = []
    swept: list[str] = []
    bytes_freed: Annotated[int, Field(ge=0)] = 0


class ImportReport(Wire):
    """An engine installed from another device's build; ``seconds`` is the install, not the build."""

    engine_id: EngineId
    seconds: Seconds
    build: BuildReport


W = TypeVar("W", bound=Wire)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, dict) else "an object"
    return text if len(text) <= 40 else text[:37] + "..."


def parse_answer(model: type[W], data: Any, device: str, what: str) -> W:
    """``data`` as ``model``, or a DeviceError naming the device, ``what`` answered, and each wrong field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc'])) or '(the answer)'}: {e['msg'].removeprefix('Value error, ').lower()}"
            + (f" (found {_shown(e['input'])})" if e["type"] != "missing" else "")
            for e in exc.errors()[:3]
        ]
        more = f" and {exc.error_count() - 3} more" if exc.error_count() > 3 else ""
        raise DeviceError(device, f"{what} answered a wrong value: {'; '.join(problems)}{more}") from None
