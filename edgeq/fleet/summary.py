"""The rollout report: what happened to each device and each wave, computed from the typed state alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from edgeq.deploy.steps import (
    Benched,
    Built,
    DeviceState,
    EngineSource,
    Evaluated,
    Phase,
    Probed,
    Smoked,
    Status,
    Step,
    StepRecord,
    StepStatus,
)
from edgeq.fleet.state import RolloutState, WaveStatus
from edgeq.fleet.verdict import Outcome


class StepSummary(BaseModel):
    """One step of one device, as the report lists it."""

    step: Step
    status: StepStatus
    seconds: float | None
    remote_seconds: float
    bytes_sent: int
    error: str | None
    result: dict[str, Any] | None

    @classmethod
    def of(cls, record: StepRecord) -> StepSummary:
        result = record.result.model_dump(mode="json") if record.result is not None else None
        return cls(step=record.step, status=record.status, seconds=record.seconds, remote_seconds=record.remote_seconds,
                   bytes_sent=record.bytes_sent, error=record.error, result=result)


class DeviceSummary(BaseModel):
    """One device at the end of (this part of) a rollout."""

    name: str
    label: str
    wave: int
    target: str
    phase: Phase
    engine_before: str | None
    engine_now: str | None  # what the journal says it runs now ("unknown" when a switch was cut off)
    device_class: str | None
    engine_source: EngineSource | None
    build_seconds: float | None
    device_seconds: float  # the device's own work (build/install, evaluate, bench, smoke), from its reports
    remote_seconds: float  # wall time of its remote commands: that work plus the agent's start-up
    wait_seconds: float  # waiting for another device of its class to build the engine
    edgeq_seconds: float  # the rest of its steps: connections, transfers, host-side work, journaling
    wall_seconds: float  # from the first to the last journaled step
    bytes_sent: int
    accuracy_drop: float | None
    p99_ms: float | None
    smoke_passed: bool | None
    error: str | None
    rollback: str | None  # ok | failed: <why> | None
    steps: list[StepSummary]


class WaveSummary(BaseModel):
    index: int
    devices: list[str]
    status: WaveStatus
    reason: str | None


class RolloutReport(BaseModel):
    """The whole rollout, as ``--json`` prints it and ``<ID>.json`` stores it."""

    id: str
    recipe: str
    engine_ids: dict[str, str]
    outcome: Outcome | None
    exit_code: int | None
    operator: str
    seconds: float
    waves: list[WaveSummary]
    devices: list[DeviceSummary]
    builds: int
    installs: int
    build_seconds_saved: float
    device_path_seconds: float  # per wave, the longest device-side chain (remote commands and waits), summed
    edgeq_seconds: float  # per wave, the longest edgeq part of any device, summed


def _device(state: RolloutState, device: DeviceState) -> DeviceSummary:
    header = state.header
    host = next(h for h in header.hosts if (h.name or h.label) == device.name)
    target = header.targets[device.name]
    engine_id = header.engine_ids[target]
    asked = device.first(Step.STATUS, Status)  # a resumed rollout asks again; the first answer is what ran before
    before = asked.current if asked else None
    probed, built = device.last(Step.PROBE, Probed), device.last(Step.BUILD, Built)
    evaluated, benched = device.last(Step.EVALUATE, Evaluated), device.last(Step.BENCH, Benched)
    smoked = device.last(Step.VERIFY, Smoked) or device.last(Step.SMOKE, Smoked)
    ends = [s.started + (s.seconds or 0.0) for s in device.steps]
    remote = sum(s.remote_seconds for s in device.steps)
    wait = sum(s.seconds or 0.0 for s in device.steps if s.step == Step.CLASS)
    stepped = sum(s.seconds or 0.0 for s in device.steps)
    rollback = None
    if device.ended_ok(Step.ROLLBACK) or device.phase == Phase.ROLLED_BACK:
        rollback = "ok"
    if device.rollback_error:
        rollback = f"failed: {device.rollback_error}"
    return DeviceSummary(
        name=device.name,
        label=host.label,
        wave=device.wave,
        target=target,
        phase=device.phase,
        engine_before=before,
        engine_now=device.engine_now(engine_id),
        device_class=probed.device_class if probed else None,
        engine_source=device.engine_source(),
        build_seconds=built.build.seconds if built and device.ended_ok(Step.BUILD) else None,
        device_seconds=round(device.device_seconds, 3),
        remote_seconds=round(remote, 3),
        wait_seconds=round(wait, 3),
        edgeq_seconds=round(max(stepped - remote - wait, 0.0), 3),
        wall_seconds=round(max(ends) - device.steps[0].started, 3) if device.steps else 0.0,
        bytes_sent=sum(s.bytes_sent for s in device.steps),
        accuracy_drop=evaluated.evaluation.drop if evaluated else None,
        p99_ms=benched.bench.int8.p99_ms if benched else None,
        smoke_passed=smoked.smoke.passed if smoked else None,
        error=device.error,
        rollback=rollback,
        steps=[StepSummary.of(s) for s in device.steps],
    )


def _per_wave(state: RolloutState, devices: list[DeviceSummary], part: Callable[[DeviceSummary], float]) -> float:
    """Devices of a wave work side by side: a wave costs its largest ``part``; waves add up."""
    return round(sum(max((part(d) for d in devices if d.wave == w.index), default=0.0) for w in state.waves), 3)


def summarize(state: RolloutState) -> RolloutReport:
    """The report of a rollout, from its state (live or replayed from the journal)."""
    devices = [_device(state, d) for d in state.devices.values()]
    stamps = [e.at for e in state.entries]
    total = (max(stamps) - min(stamps)) if stamps else 0.0
    builds = {d.device_class: d.build_seconds or 0.0 for d in devices if d.engine_source == EngineSource.BUILD}
    saved = sum(builds.get(d.device_class, 0.0) for d in devices if d.engine_source == EngineSource.INSTALL)
    return RolloutReport(
        id=state.header.id,
        recipe=str(state.header.recipe),
        engine_ids=state.header.engine_ids,
        outcome=state.outcome,
        exit_code=state.exit_code,
        operator=state.header.operator,
        seconds=round(total, 3),
        waves=[WaveSummary(index=w.index, devices=w.devices, status=w.status, reason=w.reason) for w in state.waves],
        devices=devices,
        builds=sum(1 for d in devices if d.engine_source == EngineSource.BUILD),
        installs=sum(1 for d in devices if d.engine_source == EngineSource.INSTALL),
        build_seconds_saved=round(saved, 3),
        device_path_seconds=_per_wave(state, devices, lambda d: d.remote_seconds + d.wait_seconds),
        edgeq_seconds=_per_wave(state, devices, lambda d: d.edgeq_seconds),
    )
