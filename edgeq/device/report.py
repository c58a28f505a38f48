"""The JSON reports the agent prints and writes, as standard-library dataclasses (the agent runs on Python 3.8
without pydantic). The host reads the same JSON with the pydantic models of ``edgeq/deploy/wire.py``, which
check every type and range; a test keeps the two field for field.

``Record`` gives each class ``to_dict()`` and ``from_dict()`` for the agent's own files (build.json,
history.json); ``from_dict`` ignores keys it does not know.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Type, TypeVar

T = TypeVar("T", bound="Record")


def _decode(kind: Any, value: Any) -> Any:
    """Turn a JSON value back into the annotated type (nested dataclasses, lists, dicts, Optional)."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _decode(inner[0], value) if len(inner) == 1 else value
    if origin in (list, List):
        return [_decode(args[0], v) for v in value] if args else list(value)
    if origin in (dict, Dict):
        return {k: _decode(args[1], v) for k, v in value.items()} if args else dict(value)
    if isinstance(kind, type) and issubclass(kind, Record):
        return kind.from_dict(value)
    return value


class Record:
    """Mixin: dataclass <-> plain JSON-compatible dict."""

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: _decode(hints[k], v) for k, v in data.items() if k in known})


@dataclass
class ErrorReport(Record):
    error: str
    kind: str


@dataclass
class ProbeReport(Record):
    """What the device is and what it can run; ``missing`` names what could not be found."""

    l4t: Optional[str]
    module: Optional[str]
    soc: Optional[str]
    compute_capability: Optional[str]
    gpu_int8: Optional[bool]
    dla_cores: Optional[int]
    tensorrt_version: Optional[str]
    tensorrt_source: Optional[str]
    tensorrt_python: bool
    trtexec: Optional[str]
    cpu_model: Optional[str]
    cpu_cores: int
    memory_mb: Optional[int]
    machine: str
    python: str
    onnxruntime_version: Optional[str]
    backends: List[str]
    missing: List[str] = field(default_factory=list)


PRECISIONS = ("int8", "fp16", "fp32")
QUANTIZATIONS = ("implicit", "explicit")


@dataclass
class BuildOptions(Record):
    """What ``build`` was asked to do: the JSON object the host sends (recorded in build.json)."""

    model: str
    quantization: str
    precision: str
    qdq: Optional[str] = None
    cache: Optional[str] = None
    fp16_fallback: bool = False
    dla_core: Optional[int] = None
    gpu_fallback: bool = False
    workspace_mb: Optional[int] = None
    builder_optimization_level: Optional[int] = None
    shapes: Dict[str, List[int]] = field(default_factory=dict)
    profiles: Dict[str, List[List[int]]] = field(default_factory=dict)  # input -> [min, opt, max] shapes
    threads: int = 0

    @classmethod
    def parse(cls, data: Any) -> BuildOptions:
        """The host's options object, every field checked: a field this agent does not know is refused,
        never dropped (ValueError with the field's name)."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object of build options")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError("unknown build option(s) {}: this agent cannot apply them".format(", ".join(unknown)))
        missing = [name for name in ("model", "quantization", "precision") if name not in data]
        if missing:
            raise ValueError("missing build option(s) {}".format(", ".join(missing)))
        options = cls(**data)
        problems = options._problems()
        if problems:
            raise ValueError("; ".join(problems))
        return options

    def _problems(self) -> List[str]:
        def whole(value: Any, low: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        found = []
        if self.precision not in PRECISIONS:
            found.append("precision: expected one of {}, found {!r}".format(", ".join(PRECISIONS), self.precision))
        if self.quantization not in QUANTIZATIONS:
            found.append(f"quantization: expected implicit or explicit, found {self.quantization!r}")
        for name in ("model", "qdq", "cache"):
            value = getattr(self, name)
            if not (isinstance(value, str) and value) and not (value is None and name != "model"):
                found.append(f"{name}: expected a file path, found {value!r}")
        for name in ("fp16_fallback", "gpu_fallback"):
            if not isinstance(getattr(self, name), bool):
                found.append(f"{name}: expected true or false")
        for name, low in (("dla_core", 0), ("workspace_mb", 1), ("builder_optimization_level", 0)):
            value = getattr(self, name)
            if value is not None and not whole(value, low):
                found.append(f"{name}: expected a whole number >= {low}, found {value!r}")
        if self.builder_optimization_level is not None and self.builder_optimization_level > 5:
            found.append(f"builder_optimization_level: expected 0..5, found {self.builder_optimization_level}")
        if not whole(self.threads, 0):
            found.append(f"threads: expected a whole number >= 0, found {self.threads!r}")
        shapes_ok = isinstance(self.shapes, dict) and all(
            isinstance(name, str) and isinstance(dims, list) and dims and all(whole(d, 1) for d in dims)
            for name, dims in self.shapes.items())
        if not shapes_ok:
            found.append(f"shapes: expected {{input name: [positive dims]}}, found {self.shapes!r}")
        profiles_ok = isinstance(self.profiles, dict) and all(
            isinstance(name, str) and isinstance(bounds, list) and len(bounds) == 3
            and all(isinstance(dims, list) and dims and len(dims) == len(bounds[0]) and all(whole(d, 1) for d in dims)
                    for dims in bounds)
            and all(low <= opt <= high for low, opt, high in zip(*bounds))
            for name, bounds in self.profiles.items())
        if not profiles_ok:
            found.append("profiles: expected {input name: [min dims, opt dims, max dims]} with min <= opt <= max,"
                         f" found {self.profiles!r}")
        return found


@dataclass
class Artifact(Record):
    """A file in the engine folder (path relative to it)."""

    path: str
    size_bytes: int
    sha256: str


@dataclass
class LayerPlacement(Record):
    """One layer of a built engine: its precision and where it runs (GPU, DLA, CPU)."""

    name: str
    layer_type: Optional[str]
    precision: Optional[str]
    device: str


@dataclass
class KernelCheck(Record):
    """One ONNX Runtime integer kernel on the INT8 probe's inputs, against numpy's int32 arithmetic."""

    kernel: str
    exact: bool  # equal to the exact sums (requantized outputs: within one rounding step)
    max_error: int  # largest |kernel - exact|, in the kernel's output units
    matches_saturation: bool  # equal to adjacent products added in 16 bits with saturation (vpmaddubsw)


@dataclass
class Int8Arithmetic(Record):
    """How ONNX Runtime on this machine sums u8 x s8 products (edgeq.device.int8_arith)."""

    verdict: str  # "exact" or "saturating": what edgeq acts on
    measured: str  # the probe's verdict
    forced: Optional[str]  # EDGEQ_INT8_ARITH when set
    checks: List[KernelCheck]  # full-range weights: these decide the verdict
    reduced_range: KernelCheck  # 7-bit weights: the formulation used where the verdict is "saturating"
    cpu_flags: List[str]  # for information only
    machine: str
    onnxruntime: str


@dataclass
class BuiltModel(Record):
    """One built model (the INT8 engine or the FP32 reference) as a backend produced it."""

    artifact: Artifact
    seconds: float
    command: Optional[List[str]] = None
    dla_core: Optional[int] = None
    layers: List[LayerPlacement] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    int8_arithmetic: Optional[Int8Arithmetic] = None  # onnxruntime backend: how this CPU sums u8 x s8
    int8_kernels: Optional[str] = None  # onnxruntime backend: the INT8 formulation the engine runs, and why


@dataclass
class BuildReport(Record):
    """build.json: the engine, its FP32 reference, and how they were made."""

    engine_id: str
    backend: str
    backend_version: str
    options: BuildOptions
    engine: BuiltModel
    reference: BuiltModel
    built_at: str
    seconds: float
    inputs: Dict[str, List[Any]] = field(default_factory=dict)
    timing_cache: Optional[str] = None
    meta: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Comparison(Record):
    """Candidate vs reference outputs (compare.compare_outputs)."""

    top1_agreement: float
    cosine: float
    max_abs_diff: float


@dataclass
class RunTiming(Record):
    seconds: float
    ms_per_sample: float


@dataclass
class EvaluateReport(Record):
    engine_id: str
    backend: str
    samples: int
    batch: int
    int8: RunTiming
    fp32: RunTiming
    comparison: Comparison
    scores_int8: str  # .npz in the engine folder: every output by name
    scores_fp32: str
    seconds: float = 0.0  # the whole step on the device: loading the data and both models, both runs, saving


@dataclass
class LayerTime(Record):
    """One engine layer's time in trtexec's profile run (``--exportProfile``): total, per run, and its share."""

    name: str
    time_ms: float
    average_ms: float
    median_ms: float
    percentage: float


@dataclass
class LatencyStats(Record):
    """Latency of one inference of ``batch`` samples, in milliseconds; on trtexec also its GPU compute time and
    each layer's time (from a profile run of its own, so that profiling does not slow the timed runs)."""

    iterations: int
    batch: int
    min_ms: float
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    throughput_per_s: float
    source: str = "wallclock"
    samples_ms: List[float] = field(default_factory=list)
    gpu_compute_median_ms: Optional[float] = None
    layers: List[LayerTime] = field(default_factory=list)  # slowest first


@dataclass
class BenchReport(Record):
    engine_id: str
    backend: str
    warmup: int
    int8: LatencyStats
    fp32: LatencyStats
    speedup: float
    seconds: float = 0.0


@dataclass
class SmokeReport(Record):
    engine_id: str
    backend: str
    samples: int
    comparison: Comparison
    min_agreement: float
    min_cosine: float
    passed: bool
    seconds: float


@dataclass
class Activation(Record):
    """One entry of history.json."""

    action: str
    engine_id: str
    previous: Optional[str]
    at: str
    meta: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ActivationReport(Record):
    current: str
    previous: Optional[str]
    changed: bool
    entry: Optional[Activation] = None


@dataclass
class StatusReport(Record):
    workdir: str
    current: Optional[str]
    previous: Optional[str]
    build: Optional[BuildReport]
    engines: List[str]
    history: List[Activation]
    notes: List[str] = field(default_factory=list)  # repairs the agent made to the work folder (current, history)


@dataclass
class ExportReport(Record):
    """A built engine packed for another device of the same class."""

    engine_id: str
    path: str
    size_bytes: int
    sha256: str
    files: List[str]


@dataclass
class ImportReport(Record):
    """An engine installed from another device's build; ``seconds`` is the install, not the build."""

    engine_id: str
    seconds: float
    build: BuildReport


@dataclass
class GcReport(Record):
    """Engines removed and kept; unreferenced blobs removed; leftovers of crashed runs swept (W-relative)."""

    removed: List[str]
    kept: List[str]
    blobs_removed: List[str] = field(default_factory=list)
    swept: List[str] = field(default_factory=list)
    bytes_freed: int = 0
