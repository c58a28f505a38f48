"""The deploy report: one device's facts, build, accuracy, latency and gates, read from its typed step results."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, computed_field

from edgeq import atomic
from edgeq.calibrate.report import CalibrationReport
from edgeq.deploy.evaluation import Evaluation
from edgeq.deploy.gates import GateResult
from edgeq.deploy.plan import DeployPlan
from edgeq.deploy.steps import (
    Activated,
    Benched,
    Built,
    DeviceState,
    EngineSource,
    Evaluated,
    Gated,
    Installed,
    Phase,
    Probed,
    Pushed,
    Reused,
    Smoked,
    Step,
    StepStatus,
)
from edgeq.deploy.wire import (
    ActivationReport,
    BenchReport,
    BuildReport,
    LatencyStats,
    LayerPlacement,
    ProbeReport,
    SmokeReport,
)


class Transfer(BaseModel):
    """What the deploy moved: files by the push, bytes by every command."""

    files_sent: int
    files_skipped: int
    bytes_sent: int
    bytes_received: int


class BudgetFit(BaseModel):
    """What calibration's budget fit (``calibration.fit_budget`` / ``--fit-budget``) changed in the engine, and why."""

    met: bool
    why: str  # how the fit ended, in words
    kept_high_precision: list[str]  # layers kept in float: the most sensitive, fewest that fit the budget
    sensitivity: dict[str, float]  # each kept layer's score (1 - cosine, on the output it moves most, with it alone in INT8)
    widened: list[str]  # tensors whose clipped range was widened to min-max
    predicted_drop: float  # the host's prediction once fitted

    @classmethod
    def of(cls, report: CalibrationReport) -> BudgetFit | None:
        """The fit of a calibration, or None when none ran (not asked for, or the budget held without it)."""
        if report.fit is None:
            return None
        scores = {entry.layer: entry.score for entry in report.sensitivity}
        return cls(met=report.fit["met"], why=report.fit["why"], kept_high_precision=report.kept_high_precision,
                   sensitivity={layer: scores[layer] for layer in report.kept_high_precision if layer in scores},
                   widened=report.widened, predicted_drop=report.accuracy.drop)

    @property
    def outcome(self) -> str:
        """Whether the fit met the budget, and why."""
        return f"{'met' if self.met else 'not met'}: {self.why}"

    def changes(self) -> list[tuple[str, str]]:
        """Each layer kept in float and each tensor widened, with why: what the terminal and the page both show."""
        kept = [(layer, "kept in float: among the most sensitive layers"
                 + (f" (1 - cosine {self.sensitivity[layer]:.2e} alone in INT8)" if layer in self.sensitivity else ""))
                for layer in self.kept_high_precision]
        return kept + [(tensor, "widened to min-max: its range clipped values the budget needs") for tensor in self.widened]


class DeployReport(BaseModel):
    """Everything one deploy learned. ``phases`` are host wall-clock seconds per step; ``device_seconds`` is
    the device's own work in them (build, evaluate, bench, smoke), so ``overhead_seconds`` is edgeq's part."""

    recipe: str
    target: str
    host: str
    engine_id: str
    quantization: str
    probe: ProbeReport
    build: BuildReport
    engine_source: EngineSource
    build_reused: bool
    evaluation: Evaluation
    bench: BenchReport
    smoke: SmokeReport
    gates: list[GateResult]
    activated: bool
    activation: ActivationReport | None
    engine_now: str | None  # what the device runs after this deploy ("unknown": a switch cut off, the device silent)
    transfer: Transfer
    phases: dict[str, float]
    device_seconds: float
    predicted_drop: float | None = None  # calibrate's host prediction, for comparison
    fit: BudgetFit | None = None  # what the budget fit kept in float and widened (None: no fit ran)
    files: dict[str, str] = {}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_seconds(self) -> float:
        return sum(self.phases.values())

    @computed_field  # type: ignore[prop-decorator]
    @property
    def overhead_seconds(self) -> float:
        return max(self.total_seconds - self.device_seconds, 0.0)


LAYERS_SHOWN = 8  # slowest engine layers listed in the reports


def slowest_layers(int8: LatencyStats, placements: list[LayerPlacement], count: int) -> list[tuple[str, str, float, float]]:
    """The INT8 engine's ``count`` slowest layers in trtexec's profile run (none without one): name, the precision it
    was built in (from the build's layer info), mean ms per run and share of the time in percent."""
    precision = {layer.name: layer.precision or "-" for layer in placements}
    return [(layer.name, precision.get(layer.name, "-"), layer.average_ms, layer.percentage) for layer in int8.layers[:count]]


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def deploy_folder(plan: DeployPlan, label: str) -> Path:
    """Where one device's pulled scores and reports go on the host."""
    return plan.folder / "deploy" / _slug(label)


def deploy_report(plan: DeployPlan, label: str, device: DeviceState) -> DeployReport | None:
    """The report of one device's deploy, written to its folder; None when the device stopped before it was
    judged (the error says why)."""
    probed = device.last(Step.PROBE, Probed)
    source = device.engine_source()
    built = (device.last(Step.BUILD, Built) or device.last(Step.INSTALL, Installed) or device.last(Step.REUSE, Reused))
    evaluated, benched = device.last(Step.EVALUATE, Evaluated), device.last(Step.BENCH, Benched)
    smoked, gated = device.last(Step.SMOKE, Smoked), device.last(Step.GATES, Gated)
    if None in (probed, source, built, evaluated, benched, smoked, gated):
        return None
    assert probed and source and built and evaluated and benched and smoked and gated  # narrowed for the type checker
    activated = device.last(Step.ACTIVATE, Activated) if device.ended_ok(Step.ACTIVATE) else None
    pushed = device.last(Step.PUSH, Pushed)
    phases: dict[str, float] = {}
    for record in device.steps:
        if record.status != StepStatus.RUNNING:
            phases[record.step] = round(phases.get(record.step, 0.0) + (record.seconds or 0.0), 4)
    folder = deploy_folder(plan, label)
    report = DeployReport(
        recipe=plan.recipe.name,
        target=plan.target.name,
        host=label,
        engine_id=plan.engine_id,
        quantization=plan.quantization,
        probe=probed.probe,
        build=built.report.build if isinstance(built, Installed) else built.build,
        engine_source=source,
        build_reused=source == EngineSource.REUSE,
        evaluation=evaluated.evaluation,
        bench=benched.bench,
        smoke=smoked.smoke,
        gates=gated.results,
        activated=device.phase == Phase.DONE,
        activation=activated.activation if activated else None,
        engine_now=device.engine_now(plan.engine_id),
        transfer=Transfer(
            files_sent=pushed.files_sent if pushed else 0,
            files_skipped=pushed.files_skipped if pushed else 0,
            bytes_sent=sum(r.bytes_sent for r in device.steps),
            bytes_received=sum(r.bytes_received for r in device.steps),
        ),
        phases=phases,
        device_seconds=round(device.device_seconds, 4),
        predicted_drop=plan.calibration.report.accuracy.drop,
        fit=BudgetFit.of(plan.calibration.report),
        files={"folder": str(folder), "report": str(folder / "report.json"), "html": str(folder / "report.html")},
    )
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_json(folder / "report.json", report.model_dump(mode="json"))
    return report
