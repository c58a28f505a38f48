"""The calibration report and result: data only, JSON round-trippable (rendering is in edgeq.report)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeq.device.report import Int8Arithmetic


@dataclass
class PredictedAccuracy:
    """FP32 vs the Q/DQ model on the validation data, both run by ONNX Runtime on the host."""

    metric: str
    samples: int
    fp32: float
    int8: float
    drop: float  # points of the metric lost (fp32 - int8, or int8 - fp32 for a metric where lower is better)
    top1_agreement: float  # 0..1
    cosine: dict[str, float]  # per output
    budget: float  # max allowed drop, in points
    passed: bool
    details: dict[str, dict[str, float]] = field(default_factory=dict)  # secondary numbers per model (mAP@0.5, SNR)


@dataclass
class LayerSensitivity:
    """How much quantizing this layer alone changes the outputs (1 - cosine of the first output)."""

    layer: str
    op_type: str
    tensors: list[str]
    score: float
    top1_agreement: float
    proxy: float = 0.0  # noise-to-signal INT8 adds to its inputs (edgeq.calibrate.proxy): the first, cheap ranking
    measured: bool = True  # False: ranked by the proxy alone (score and agreement not measured)


@dataclass
class RangeSummary:
    """How many tensors got a range, and the spread of their amax."""

    tensors: int
    amax_min: float
    amax_median: float
    amax_max: float
    clipped: int  # tensors whose amax is below their max |x|


@dataclass
class CalibrationReport:
    """Everything `edgeq calibrate` found, as written to report.json."""

    recipe: str
    model: str
    target: str
    tensorrt: str | None
    method: str
    percentile: float
    calibration_samples: int
    key: str
    created: str
    seconds: dict[str, float]
    ranges: RangeSummary
    quantized_layers: list[str]
    excluded: dict[str, str]  # tensor -> reason it stays out of the cache and the Q/DQ model
    kept_high_precision: list[str]  # layers the budget fit kept in float
    accuracy: PredictedAccuracy
    sensitivity: list[LayerSensitivity]
    notes: list[str] = field(default_factory=list)
    range_choice: dict[str, Any] = field(default_factory=dict)  # method ``auto``: the candidates' metric and the pick
    range_methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> tensors that got it, and why
    widened: list[str] = field(default_factory=list)  # tensors the budget fit widened to min-max
    fit: dict[str, Any] | None = None  # --fit-budget: met, why, trials
    classes: list[str] = field(default_factory=list)  # class names in label order
    preparation: list[dict[str, Any]] = field(default_factory=list)  # each step: applied or skipped and why, max |diff|
    memory: dict[str, float] = field(default_factory=dict)  # peak RSS, statistics passes, exposed bytes, budget
    int8_arithmetic: Int8Arithmetic | None = None  # how this CPU's ONNX Runtime sums int8 products
    prediction_kernels: str = ""  # what ran the INT8 prediction, and why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationReport:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["ranges"] = RangeSummary(**data["ranges"])
        values["accuracy"] = PredictedAccuracy(**data["accuracy"])
        values["sensitivity"] = [LayerSensitivity(**s) for s in data["sensitivity"]]
        if data.get("int8_arithmetic"):
            values["int8_arithmetic"] = Int8Arithmetic.from_dict(data["int8_arithmetic"])
        return cls(**values)


@dataclass
class Artifacts:
    """The files of one calibration, all in ``folder``; ``cache`` is None for targets without implicit INT8."""

    folder: Path
    fp32_model: Path
    qdq_model: Path
    cache: Path | None
    ranges: Path
    validation: Path
    report: Path
    manifest: Path

    @classmethod
    def in_folder(cls, folder: Path, with_cache: bool) -> Artifacts:
        return cls(
            folder=folder,
            fp32_model=folder / "model.fp32.onnx",
            qdq_model=folder / "model.qdq.onnx",
            cache=folder / "calibration.cache" if with_cache else None,
            ranges=folder / "ranges.json",
            validation=folder / "validation.npz",
            report=folder / "report.json",
            manifest=folder / "manifest.json",
        )

    def files(self) -> list[Path]:
        """The artifact files the manifest lists (all but the manifest itself)."""
        return [p for p in (self.fp32_model, self.qdq_model, self.cache, self.ranges, self.validation, self.report) if p]

    def to_dict(self) -> dict[str, str | None]:
        return {f.name: None if getattr(self, f.name) is None else str(getattr(self, f.name)) for f in fields(self)}


@dataclass
class CalibrationResult:
    """What `calibrate` returns: where the artifacts are, the report, and whether it was reused."""

    folder: Path
    artifacts: Artifacts
    report: CalibrationReport
    reused: bool = False

    @property
    def passed(self) -> bool:
        return self.report.accuracy.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "reused": self.reused,
            "passed": self.passed,
            "artifacts": self.artifacts.to_dict(),
            "report": self.report.to_dict(),
        }
