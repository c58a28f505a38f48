"""The JSON reports the agent prints and writes: one schema shared by the device and the host.

Every class has ``to_dict()`` and ``from_dict()``; ``from_dict`` ignores keys it does not know,
so an older host can read a newer device's report.
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
        return cls(**{k: _decode(hints[k], v) for k, v in data.items() if k in known})  # type: ignore[call-arg]


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


@dataclass
class BuildOptions(Record):
    """What ``build`` was asked to do (recorded in build.json)."""

    model: str
    quantization: str
    precision: str
    qdq: Optional[str] = None
    cache: Optional[str] = None
    fp16_fallback: bool = False
    dla_core: Optional[int] = None
    gpu_fallback: bool = False
    workspace_mb: Optional[int] = None
    shapes: Dict[str, List[int]] = field(default_factory=dict)
    profiles: Dict[str, List[List[int]]] = field(default_factory=dict)  # input -> [min, opt, max] shapes
    threads: int = 0


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
class BuiltModel(Record):
    """One built model (the INT8 engine or the FP32 reference) as a backend produced it."""

    artifact: Artifact
    seconds: float
    command: Optional[List[str]] = None
    dla_core: Optional[int] = None
    layers: List[LayerPlacement] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


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
class LatencyStats(Record):
    """Latency of one inference of ``batch`` samples, in milliseconds."""

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
