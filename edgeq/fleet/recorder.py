"""Record a rollout as it happens: every entry goes to the journal first, then to the live state and its watchers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from edgeq.errors import EdgeqError
from edgeq.fleet import journal
from edgeq.fleet.journal import Entry, Journal
from edgeq.fleet.state import RolloutState, apply

Watcher = Callable[[RolloutState, Entry], None]


def describe_error(exc: BaseException) -> str:
    """The one-line message of an error, for the journal and the report."""
    if isinstance(exc, EdgeqError):
        return exc.message
    return f"{exc.__class__.__name__}: {exc}"


class Recorder:
    """The only writer of a rollout's journal and state; safe to call from device threads."""

    def __init__(self, journal_: Journal, state: RolloutState, watcher: Watcher | None = None) -> None:
        self.journal = journal_
        self.state = state
        self._watcher = watcher
        self._lock = threading.Lock()

    def record(self, entry: Entry) -> None:
        with self._lock:
            self.journal.append(entry)
            apply(self.state, entry)
            if self._watcher is not None:
                self._watcher(self.state, entry)

    def wave(self, index: int, status: str, **data: Any) -> None:
        self.record(Entry(journal.WAVE, status, wave=index, data=data))

    def device(self, name: str, status: str, **data: Any) -> None:
        self.record(Entry(journal.DEVICE, status, device=name, wave=self.state.devices[name].wave, data=data))

    def rollback(self, name: str, status: str, **data: Any) -> None:
        self.record(Entry(journal.ROLLBACK, status, device=name, wave=self.state.devices[name].wave, data=data))

    def end(self, outcome: str, exit_code: int, **data: Any) -> None:
        self.record(Entry(journal.END, outcome, data={"exit_code": exit_code, **data}))

    @contextmanager
    def step(self, name: str, step: str) -> Iterator[dict[str, Any]]:
        """Journal a device step's start, then its end: ``ok`` with the data the block filled in, or
        ``failed`` with the error (which propagates)."""
        wave = self.state.devices[name].wave
        self.record(Entry(journal.STEP, "start", device=name, step=step, wave=wave))
        data: dict[str, Any] = {}
        try:
            yield data
        except BaseException as exc:
            self.record(Entry(journal.STEP, "failed", device=name, step=step, wave=wave, data={**data, "error": describe_error(exc)}))
            raise
        self.record(Entry(journal.STEP, "ok", device=name, step=step, wave=wave, data=data))
