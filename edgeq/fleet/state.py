"""A rollout's state, rebuilt from its journal: where each device and each wave got to.

The journal is the only source of truth: a running rollout, ``--resume`` and the final report all
read state through :func:`apply`, which turns each step's JSON back into its typed result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeq.deploy.steps import (
    RESULTS,
    DeviceState,
    Phase,
    Step,
    StepRecord,
    StepResult,
    StepStatus,
)
from edgeq.errors import InputError
from edgeq.fleet.journal import Entry, Event, RolloutHeader, StepData
from edgeq.fleet.verdict import Outcome
from edgeq.strenum import StrEnum


class WaveStatus(StrEnum):
    PENDING = "pending"
    START = "start"  # the journal's entry that opens a wave
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


@dataclass
class WaveState:
    index: int
    devices: list[str]
    status: WaveStatus = WaveStatus.PENDING
    reason: str | None = None
    outcome: Outcome | None = None  # when failed: why the rollout stops


@dataclass
class RolloutState:
    header: RolloutHeader
    devices: dict[str, DeviceState]
    waves: list[WaveState]
    outcome: Outcome | None = None
    exit_code: int | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    def wave_devices(self, wave: WaveState) -> list[DeviceState]:
        return [self.devices[name] for name in wave.devices]


def initial(header: RolloutHeader) -> RolloutState:
    """The state of a rollout that has not started any wave."""
    devices = {name: DeviceState(name, index) for index, names in enumerate(header.waves) for name in names}
    waves = [WaveState(index, list(names)) for index, names in enumerate(header.waves)]
    return RolloutState(header, devices, waves)


def replay(header: RolloutHeader, entries: list[Entry]) -> RolloutState:
    """Apply every journal entry, in order, to the initial state."""
    state = initial(header)
    for entry in entries:
        apply(state, entry)
    return state


def apply(state: RolloutState, entry: Entry) -> None:
    """Update ``state`` with one entry (the same function serves live runs and replays)."""
    state.entries.append(entry)
    if entry.event == Event.WAVE and entry.wave is not None:
        wave = state.waves[entry.wave]
        wave.status = WaveStatus.RUNNING if entry.status == WaveStatus.START else WaveStatus(entry.status)
        wave.reason = entry.data.get("reason")
        wave.outcome = Outcome(entry.data["outcome"]) if entry.data.get("outcome") else None
    elif entry.event == Event.END:
        state.outcome = Outcome(entry.status)
        state.exit_code = entry.data.get("exit_code")
    elif entry.device is not None and entry.device in state.devices:
        _apply_device(state.devices[entry.device], entry)


def _apply_device(device: DeviceState, entry: Entry) -> None:
    if entry.event == Event.STEP and entry.step is not None:
        if entry.status == StepStatus.START:
            device.phase = Phase.WORKING
            device.error = None
            device.steps.append(StepRecord(entry.step, StepStatus.RUNNING, entry.at))
            if entry.step == Step.ACTIVATE:
                device.switched = True
            return
        for record in reversed(device.steps):
            if record.step == entry.step and record.status == StepStatus.RUNNING:
                data = StepData.model_validate(entry.data)
                record.status = StepStatus(entry.status)
                record.seconds = round(entry.at - record.started, 3)
                record.remote_seconds, record.error = data.remote_seconds, data.error
                record.bytes_sent, record.bytes_received = data.bytes_sent, data.bytes_received
                if data.result is not None:
                    record.result = _result(entry, data.result)
                break
    elif entry.event == Event.DEVICE:
        device.phase = Phase(entry.status)
        device.error = entry.data.get("error")
        if device.phase in (Phase.FAILED, Phase.GATE_FAILED):
            device.failure = device.phase
    elif entry.event == Event.ROLLBACK:
        if entry.status == StepStatus.OK:
            device.phase = Phase.ROLLED_BACK
            device.rollback_error = None
        elif entry.status == StepStatus.FAILED:
            device.phase = Phase.ROLLBACK_PENDING
            device.rollback_error = entry.data.get("error")


def _result(entry: Entry, data: dict[str, object]) -> StepResult:
    kind = RESULTS.get(entry.step) if entry.step is not None else None
    if kind is None:
        raise InputError(f"journal: step {entry.step} of {entry.device} records a result, but that step has none")
    return kind.model_validate(data)
