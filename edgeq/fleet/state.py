"""A rollout's state, rebuilt from its journal: where each device and each wave got to.

The journal is the only source of truth: a running rollout, ``--resume`` and the final report all
read state through :func:`replay`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeq.fleet import journal
from edgeq.fleet.journal import Entry, RolloutHeader

# DeviceState.phase values
PENDING = "pending"
WORKING = "working"
DONE = "done"  # switched to the new engine by this rollout and verified
CURRENT = "current"  # was already on the new engine; verified, untouched
FAILED = "failed"  # a device or connection failure: counts against the wave's failure budget
GATE_FAILED = "gate_failed"  # the engine failed a gate on this device: stops the rollout
HELD = "held"  # passed its gates, not switched: its wave failed on other devices
ROLLED_BACK = "rolled_back"

FINISHED_PHASES = (DONE, CURRENT)


@dataclass
class StepRecord:
    """One step of one device: when it started, how long it took, how it ended."""

    name: str
    status: str
    started: float
    seconds: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeviceState:
    name: str
    wave: int
    phase: str = PENDING
    error: str | None = None
    switched: bool = False  # an activate step started: the device may be on the new engine
    rollback_error: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)  # data of the device's outcome entry

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    @property
    def needs_rollback(self) -> bool:
        """Switched by this rollout and not yet verified back on its previous engine."""
        return self.switched and self.phase != ROLLED_BACK


@dataclass
class WaveState:
    index: int
    devices: list[str]
    status: str = PENDING  # pending | running | passed | failed
    reason: str | None = None
    outcome: str | None = None  # when failed: why the rollout stops (see edgeq.fleet.verdict)


@dataclass
class RolloutState:
    header: RolloutHeader
    devices: dict[str, DeviceState]
    waves: list[WaveState]
    outcome: str | None = None
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
    if entry.event == journal.WAVE and entry.wave is not None:
        wave = state.waves[entry.wave]
        wave.status = "running" if entry.status == "start" else entry.status
        wave.reason = entry.data.get("reason")
        wave.outcome = entry.data.get("outcome")
    elif entry.event == journal.END:
        state.outcome = entry.status
        state.exit_code = entry.data.get("exit_code")
    elif entry.device is not None and entry.device in state.devices:
        _apply_device(state.devices[entry.device], entry)


def _apply_device(device: DeviceState, entry: Entry) -> None:
    if entry.event == journal.STEP:
        if entry.status == "start":
            device.phase = WORKING
            device.error = None
            device.steps.append(StepRecord(entry.step or "?", "running", entry.at))
            if entry.step == "activate":
                device.switched = True
        else:
            for step in reversed(device.steps):
                if step.name == entry.step and step.status == "running":
                    step.status = entry.status
                    step.seconds = round(entry.at - step.started, 3)
                    step.data = entry.data
                    break
    elif entry.event == journal.DEVICE:
        device.phase = entry.status
        device.error = entry.data.get("error")
        device.outcome = entry.data
    elif entry.event == journal.ROLLBACK:
        if entry.status == "ok":
            device.phase = ROLLED_BACK
            device.rollback_error = None
        elif entry.status == "failed":
            device.rollback_error = entry.data.get("error")
