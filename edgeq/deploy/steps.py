"""The device pipeline's vocabulary: its steps, each step's typed result, and one device's record of them.

A result is what a step learned (the agent's validated answer, or the host's own numbers); the journal
stores it as JSON and a replay reads it back into the same model, so the rollout summary, the live view
and the deploy report all read typed fields, never string keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from edgeq.deploy.evaluation import Evaluation
from edgeq.deploy.gates import GateResult
from edgeq.deploy.wire import (
    ActivationReport,
    BenchReport,
    BuildReport,
    EvaluateReport,
    GcReport,
    ImportReport,
    ProbeReport,
    SmokeReport,
)
from edgeq.strenum import StrEnum


class Step(StrEnum):
    """The steps, in the order a device goes through them (CLASS/INSTALL/FETCH only when built once per class)."""

    CONNECT = "connect"
    PUSH = "push"
    STATUS = "status"
    PROBE = "probe"
    REUSE = "reuse"  # the engine is already on the device
    CLASS = "class"  # who builds the device class's engine (waits while another device builds it)
    INSTALL = "install"  # the engine another device of the class built
    BUILD = "build"
    FETCH = "fetch"  # the built engine, to the host, for the others of its class
    EVALUATE = "evaluate"
    BENCH = "bench"
    SMOKE = "smoke"
    GATES = "gates"
    ACTIVATE = "activate"
    VERIFY = "verify"  # smoke test of the active engine
    ROLLBACK = "rollback"
    GC = "gc"  # old engines removed after a verified switch (keep-last-N)


class StepStatus(StrEnum):
    START = "start"  # the journal's entry that opens a step
    RUNNING = "running"  # started, not ended
    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the host stopped during the step (found on resume)


class Phase(StrEnum):
    """Where a device is in a deploy or rollout."""

    PENDING = "pending"
    WORKING = "working"
    DONE = "done"  # switched to the new engine and verified
    CURRENT = "current"  # was already on the new engine; verified, untouched
    FAILED = "failed"  # a device or connection failure: counts against the wave's failure budget
    GATE_FAILED = "gate_failed"  # the engine failed a gate on this device
    HELD = "held"  # passed its gates, not switched: its wave failed on other devices
    ROLLED_BACK = "rolled_back"
    ROLLBACK_PENDING = "rollback_pending"  # may be on the new engine: its rollback could not run (resume retries it)


FINISHED = (Phase.DONE, Phase.CURRENT)


class EngineSource(StrEnum):
    BUILD = "build"
    INSTALL = "install"
    REUSE = "reuse"


class StepResult(BaseModel):
    """What one step learned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def device_seconds(self) -> float:
        """The device's own work in the step, from its report (0 for steps that only ask or move files)."""
        return 0.0


class Pushed(StepResult):
    files_sent: int
    files_skipped: int
    bytes_sent: int


class Status(StepResult):
    current: str | None
    previous: str | None
    engines: list[str]


class Probed(StepResult):
    probe: ProbeReport
    device_class: str


class Reused(StepResult):
    build: BuildReport


class ClassRole(StepResult):
    device_class: str
    role: Literal["build", "install"]


class Installed(StepResult):
    builder: str
    report: ImportReport

    @property
    def device_seconds(self) -> float:
        return self.report.seconds


class Built(StepResult):
    build: BuildReport

    @property
    def device_seconds(self) -> float:
        return self.build.seconds


class Fetched(StepResult):
    device_class: str
    file: Path
    build_seconds: float


class Evaluated(StepResult):
    report: EvaluateReport
    evaluation: Evaluation

    @property
    def device_seconds(self) -> float:
        return self.report.seconds


class Benched(StepResult):
    bench: BenchReport

    @property
    def device_seconds(self) -> float:
        return self.bench.seconds


class Smoked(StepResult):
    smoke: SmokeReport

    @property
    def device_seconds(self) -> float:
        return self.smoke.seconds


class Gated(StepResult):
    results: list[GateResult]


class Activated(StepResult):
    activation: ActivationReport


class RolledBack(StepResult):
    current: str | None


class Collected(StepResult):
    gc: GcReport


RESULTS: dict[Step, type[StepResult]] = {
    Step.PUSH: Pushed,
    Step.STATUS: Status,
    Step.PROBE: Probed,
    Step.REUSE: Reused,
    Step.CLASS: ClassRole,
    Step.INSTALL: Installed,
    Step.BUILD: Built,
    Step.FETCH: Fetched,
    Step.EVALUATE: Evaluated,
    Step.BENCH: Benched,
    Step.SMOKE: Smoked,
    Step.GATES: Gated,
    Step.ACTIVATE: Activated,
    Step.VERIFY: Smoked,
    Step.ROLLBACK: RolledBack,
    Step.GC: Collected,
}

R = TypeVar("R", bound=StepResult)


@dataclass
class StepRecord:
    """One step of one device: when it started, how long it took, how it ended, what it learned."""

    step: Step
    status: StepStatus
    started: float
    seconds: float | None = None
    remote_seconds: float = 0.0  # wall time of the step's remote commands
    bytes_sent: int = 0
    bytes_received: int = 0
    result: StepResult | None = None
    error: str | None = None


@dataclass
class DeviceState:
    """One device's record in a deploy or rollout."""

    name: str
    wave: int
    phase: Phase = Phase.PENDING
    error: str | None = None
    failure: Phase | None = None  # FAILED or GATE_FAILED once either happened (a rollback keeps it)
    switched: bool = False  # an activate step started: the device may be on the new engine
    rollback_error: str | None = None
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def needs_rollback(self) -> bool:
        """Switched by this rollout and not yet verified back on its previous engine."""
        return self.switched and self.phase != Phase.ROLLED_BACK

    def last(self, step: Step, kind: type[R]) -> R | None:
        """The result of the last ``step`` that recorded one (a failed step may have: the gates that failed)."""
        for record in reversed(self.steps):
            if record.step == step and isinstance(record.result, kind):
                return record.result
        return None

    def first(self, step: Step, kind: type[R]) -> R | None:
        """The result of the first ``step`` that recorded one (a resumed rollout asks again)."""
        return next((r.result for r in self.steps if r.step == step and isinstance(r.result, kind)), None)

    def ended_ok(self, step: Step) -> bool:
        return any(r.step == step and r.status == StepStatus.OK for r in self.steps)

    @property
    def device_seconds(self) -> float:
        """The device's own work (build or install, evaluate, bench, smoke, verify), from its reports."""
        return sum(r.result.device_seconds for r in self.steps if r.status == StepStatus.OK and r.result is not None)

    def engine_now(self, engine_id: str) -> str | None:
        """What the device runs now by this record (``engine_id`` is the new engine; "unknown" when a switch
        was cut off and the device did not say)."""
        if self.phase in FINISHED:
            return engine_id
        rolled = self.last(Step.ROLLBACK, RolledBack)
        if self.phase == Phase.ROLLED_BACK and rolled is not None:
            return rolled.current
        switches = [i for i, r in enumerate(self.steps) if r.step in (Step.ACTIVATE, Step.ROLLBACK)]
        if not switches:
            before = self.first(Step.STATUS, Status)  # a resumed rollout asks again; the first answer is what ran before
            return before.current if before else None
        last = self.steps[switches[-1]]
        asked = [r.result for r in self.steps[switches[-1] + 1:] if r.step == Step.STATUS and isinstance(r.result, Status)]
        if asked:  # the status asked after a failed switch
            return asked[-1].current
        if last.status == StepStatus.OK and last.step == Step.ACTIVATE:
            return engine_id
        if last.status == StepStatus.OK and rolled is not None:
            return rolled.current
        return "unknown"

    def engine_source(self) -> EngineSource | None:
        for source in EngineSource:
            if self.ended_ok(Step(source.value)):
                return source
        return None
