"""The calibration report and result: data only (rendering is in edgeq.report), pydantic models like the
deploy report: ``model_dump(mode="json")`` writes report.json, ``model_validate`` reads it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, computed_field

from edgeq.device.report import Int8Arithmetic


class PredictedAccuracy(BaseModel):
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
    details: dict[str, dict[str, float]] = {}  # secondary numbers per model (mAP@0.5, SNR)


class LayerSensitivity(BaseModel):
    """How much quantizing this layer alone changes the outputs (1 - cosine of the first output)."""

    layer: str
    op_type: str
    tensors: list[str]
    score: float
    top1_agreement: float
    proxy: float = 0.0  # noise-to-signal INT8 adds to its inputs (edgeq.calibrate.proxy): the first, cheap ranking
    measured: bool = True  # False: ranked by the proxy alone (score and agreement not measured)


class RangeSummary(BaseModel):
    """How many tensors got a range, and the spread of their amax."""

    tensors: int
    amax_min: float
    amax_median: float
    amax_max: float
    clipped: int  # tensors whose amax is below their max |x|


class MethodChoice(BaseModel):
    """Which method the tensors that are not protected got, and the metric each candidate reached (INT8)."""

    method: str
    trials: dict[str, float]
    why: str = ""


class PreparationStep(BaseModel):
    """One preparation step: applied or skipped (and why), with the largest output difference it was checked at."""

    name: str
    applied: bool
    max_abs_diff: float | None = None  # against the original on the check samples; None when not run
    reason: str = ""  # why it was skipped
    seconds: float = 0.0


class CalibrationReport(BaseModel):
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
    notes: list[str] = []
    range_choice: MethodChoice  # the method the tensors that are not protected got (``auto``: the candidates' metric)
    range_methods: dict[str, dict[str, Any]] = {}  # method -> tensors that got it, and why
    widened: list[str] = []  # tensors the budget fit widened to min-max
    fit: dict[str, Any] | None = None  # --fit-budget: met, why, trials
    classes: list[str] = []  # class names in label order
    preparation: list[PreparationStep] = []
    memory: dict[str, float] = {}  # peak RSS, statistics passes, exposed bytes, budget
    int8_arithmetic: Int8Arithmetic | None = None  # how this CPU's ONNX Runtime sums int8 products
    prediction_kernels: str = ""  # what ran the INT8 prediction, and why
    statistics_key: str = ""  # the calibration store entry of the statistics and ranges (edgeq.calibrate.store)
    statistics_reused: bool = False  # taken from the store: no statistics pass ran for this target
    validation_reused: bool = False  # FP32 outputs and validation.npz from the store: only the INT8 model ran


class Artifacts(BaseModel):
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


class CalibrationResult(BaseModel):
    """What `calibrate` returns: where the artifacts are, the report, and whether it was reused."""

    folder: Path
    artifacts: Artifacts
    report: CalibrationReport
    reused: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.report.accuracy.passed
