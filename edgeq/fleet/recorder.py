"""Record a deploy or rollout as it happens: every entry goes to the journal first (a rollout has one), then to
the live state and its watchers. The recorder is the device pipeline's observer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from edgeq.deploy.pipeline import StepSlot, describe_error
from edgeq.deploy.steps import Phase, Step, StepStatus
from edgeq.fleet.journal import Entry, Event, Journal, StepData
from edgeq.fleet.state import RolloutState, WaveStatus, apply
from edgeq.fleet.verdict import Outcome

Watcher = Callable[[RolloutState, Entry], None]


class Recorder:
    """The only writer of a run's journal and state; safe to call from device threads."""

    def __init__(self, journal: Journal | None, state: RolloutState, watcher: Watcher | None = None) -> None:
        self.journal = journal
        self.state = state
        self._watcher = watcher
        self._lock = threading.Lock()

    def record(self, entry: Entry) -> None:
        with self._lock:
            if self.journal is not None:
                self.journal.append(entry)
            apply(self.state, entry)
            if self._watcher is not None:
                self._watcher(self.state, entry)

    def wave(self, index: int, status: WaveStatus, **data: Any) -> None:
        self.record(Entry(event=Event.WAVE, status=status, wave=index, data=data))

    def device(self, device: str, phase: Phase, *, error: str | None = None) -> None:
        data = {"error": error} if error is not None else {}
        self.record(Entry(event=Event.DEVICE, status=phase, device=device, wave=self.state.devices[device].wave, data=data))

    def rollback(self, device: str, ok: bool, *, current: str | None = None, error: str | None = None) -> None:
        data = {"error": error} if error is not None else {"current": current}
        status = StepStatus.OK if ok else StepStatus.FAILED
        self.record(Entry(event=Event.ROLLBACK, status=status, device=device, wave=self.state.devices[device].wave, data=data))

    def progress(self, device: str, step: Step, done: int, total: int) -> None:
        """How far a running step got: for the watchers only (neither journaled nor part of the state)."""
        with self._lock:
            if self._watcher is not None:
                entry = Entry(event=Event.PROGRESS, status=StepStatus.RUNNING, device=device, step=step,
                              wave=self.state.devices[device].wave, data={"done": done, "total": total})
                self._watcher(self.state, entry)

    def end(self, outcome: Outcome, exit_code: int, **data: Any) -> None:
        self.record(Entry(event=Event.END, status=outcome, data={"exit_code": exit_code, **data}))

    @contextmanager
    def step(self, device: str, step: Step) -> Iterator[StepSlot]:
        """Journal a device step's start, then its end: ``ok`` with the slot the block filled in, or
        ``failed`` with the error (which propagates) and whatever the slot holds."""
        wave = self.state.devices[device].wave
        self.record(Entry(event=Event.STEP, status=StepStatus.START, device=device, step=step, wave=wave))
        slot = StepSlot()
        try:
            yield slot
        except BaseException as exc:
            self._close(device, step, wave, slot, StepStatus.FAILED, describe_error(exc))
            raise
        self._close(device, step, wave, slot, StepStatus.OK, None)

    def _close(self, device: str, step: Step, wave: int, slot: StepSlot, status: StepStatus, error: str | None) -> None:
        data = StepData(
            result=slot.result.model_dump(mode="json") if slot.result is not None else None,
            remote_seconds=slot.remote_seconds,
            bytes_sent=slot.bytes_sent,
            bytes_received=slot.bytes_received,
            error=error,
        )
        entry = Entry(event=Event.STEP, status=status, device=device, step=step, wave=wave, data=data.model_dump(exclude_defaults=True))
        self.record(entry)
