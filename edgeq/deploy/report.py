"""The deploy report: one device's facts, build, accuracy, latency and gates; JSON-ready data only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeq.deploy.evaluation import Evaluation
from edgeq.deploy.gates import GateResult
from edgeq.device.report import ActivationReport, BenchReport, BuildReport, ProbeReport


@dataclass
class Transfer:
    """What the push moved."""

    files_sent: int
    files_skipped: int
    bytes_sent: int
    bytes_received: int


@dataclass
class DeployReport:
    """Everything one deploy learned. ``phases`` are host wall-clock seconds per step; ``device_seconds`` is
    the device's own work in them (build, evaluate, bench), so ``overhead_seconds`` is edgeq's part."""

    recipe: str
    target: str
    host: str
    engine_id: str
    quantization: str
    probe: ProbeReport
    build: BuildReport
    build_reused: bool
    evaluation: Evaluation
    bench: BenchReport
    gates: list[GateResult]
    activated: bool
    activation: ActivationReport | None
    transfer: Transfer
    phases: dict[str, float] = field(default_factory=dict)
    device_seconds: float = 0.0
    predicted_drop: float | None = None  # calibrate's host prediction, for comparison
    files: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def total_seconds(self) -> float:
        return sum(self.phases.values())

    @property
    def overhead_seconds(self) -> float:
        return max(self.total_seconds - self.device_seconds, 0.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(passed=self.passed, total_seconds=self.total_seconds, overhead_seconds=self.overhead_seconds)
        return data
