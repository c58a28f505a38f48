"""The rollout report: what happened to each device and each wave, computed from the journal's state alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from edgeq.fleet import state as st
from edgeq.fleet.state import DeviceState, RolloutState, StepRecord

DEVICE_WORK_STEPS = ("build", "install", "evaluate", "bench", "smoke", "verify")


class DeviceSummary(BaseModel):
    """One device at the end of (this part of) a rollout."""

    name: str
    label: str
    wave: int
    target: str
    phase: str
    engine_before: str | None
    engine_now: str | None  # what the journal says it runs now ("unknown" when a switch was cut off)
    device_class: str | None
    engine_source: str | None  # built | installed | reused | None
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
    steps: list[dict[str, Any]]


class WaveSummary(BaseModel):
    index: int
    devices: list[str]
    status: str
    reason: str | None


class RolloutReport(BaseModel):
    """The whole rollout, as ``--json`` prints it and ``<ID>.json`` stores it."""

    id: str
    recipe: str
    engine_ids: dict[str, str]
    outcome: str | None
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


def _last(device: DeviceState, name: str) -> StepRecord | None:
    for step in reversed(device.steps):
        if step.name == name and step.status == "ok":
            return step
    return None


def _first(device: DeviceState, name: str) -> StepRecord | None:
    return next((s for s in device.steps if s.name == name and s.status == "ok"), None)


def _value(device: DeviceState, step: str, key: str) -> Any:
    record = _last(device, step)
    return record.data.get(key) if record else None


def _engine_now(device: DeviceState, engine_id: str, before: str | None) -> str | None:
    if device.phase in st.FINISHED_PHASES:
        return engine_id
    if device.phase == st.ROLLED_BACK:
        return _value(device, "rollback", "current") or before
    if device.switched:
        activated = _last(device, "activate")
        return engine_id if activated else "unknown"
    return before


def _device(state: RolloutState, device: DeviceState) -> DeviceSummary:
    header = state.header
    host = next(h for h in header.hosts if (h.name or h.label) == device.name)
    target = header.targets[device.name]
    engine_id = header.engine_ids[target]
    asked = _first(device, "status")  # a resumed rollout asks again; the first answer is what ran before
    before = asked.data.get("current") if asked else None
    source = next((name for name in ("build", "install", "reuse") if _last(device, name)), None)
    work = sum(float(s.data.get("device_seconds") or 0.0) for s in device.steps if s.status == "ok" and s.name in DEVICE_WORK_STEPS)
    ends = [s.started + (s.seconds or 0.0) for s in device.steps]
    remote = sum(float(s.data.get("remote_seconds") or 0.0) for s in device.steps)
    wait = sum(s.seconds or 0.0 for s in device.steps if s.name == "class")
    stepped = sum(s.seconds or 0.0 for s in device.steps)
    rollback = None
    if _last(device, "rollback") or device.phase == st.ROLLED_BACK:
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
        engine_now=_engine_now(device, engine_id, before),
        device_class=_value(device, "probe", "class"),
        engine_source=source,
        build_seconds=_value(device, "build", "device_seconds"),
        device_seconds=round(work, 3),
        remote_seconds=round(remote, 3),
        wait_seconds=round(wait, 3),
        edgeq_seconds=round(max(stepped - remote - wait, 0.0), 3),
        wall_seconds=round(max(ends) - device.steps[0].started, 3) if device.steps else 0.0,
        bytes_sent=int(sum(int(s.data.get("bytes_sent") or 0) for s in device.steps)),
        accuracy_drop=_value(device, "evaluate", "drop"),
        p99_ms=_value(device, "bench", "p99_ms"),
        smoke_passed=_value(device, "verify", "passed") if _last(device, "verify") else _value(device, "smoke", "passed"),
        error=device.error,
        rollback=rollback,
        steps=[{"step": s.name, "status": s.status, "seconds": s.seconds, **s.data} for s in device.steps],
    )


def _per_wave(state: RolloutState, devices: list[DeviceSummary], part: Callable[[DeviceSummary], float]) -> float:
    """Devices of a wave work side by side: a wave costs its largest ``part``; waves add up."""
    return round(sum(max((part(d) for d in devices if d.wave == w.index), default=0.0) for w in state.waves), 3)


def summarize(state: RolloutState) -> RolloutReport:
    """The report of a rollout, from its state (live or replayed from the journal)."""
    devices = [_device(state, d) for d in state.devices.values()]
    stamps = [e.at for e in state.entries]
    total = (max(stamps) - min(stamps)) if stamps else 0.0
    builds = {d.device_class: d.build_seconds or 0.0 for d in devices if d.engine_source == "build"}
    saved = sum(builds.get(d.device_class, 0.0) for d in devices if d.engine_source == "install")
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
        builds=sum(1 for d in devices if d.engine_source == "build"),
        installs=sum(1 for d in devices if d.engine_source == "install"),
        build_seconds_saved=round(saved, 3),
        device_path_seconds=_per_wave(state, devices, lambda d: d.remote_seconds + d.wait_seconds),
        edgeq_seconds=_per_wave(state, devices, lambda d: d.edgeq_seconds),
    )
