"""Progress a person can read wherever the output goes.

On a terminal: rich bars with counts, elapsed time and the time left, one per running step. Anywhere else (a
pipe, a CI log, a file): one plain line per step when it ends, with its count and time, and a line every
:data:`HEARTBEAT` seconds while a long step runs, never minutes of silence. In both, a step that ends leaves one
line behind (``calibration statistics: 256/256 in 12.3 s``, ``orin-1: build in 41.2 s``), so a terminal's scrollback and a log read the same.

:func:`progress` hands out a rich :class:`~rich.progress.Progress` either way: code reports steps with
``add_task`` / ``advance`` / ``update`` and never asks where the output goes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

HEARTBEAT = 30.0  # seconds between two lines of a running step when the output is not a terminal


def _clock(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def _count(task: Task) -> str:
    """``done/total`` for a counted step (a total above 1); nothing for a step that is one piece of work."""
    return f"{int(task.completed)}/{int(task.total)}" if task.total is not None and task.total > 1 else ""


class _Count(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(_count(task), style="progress.download")


class _Left(ProgressColumn):
    """The time left, once the step's speed is known."""

    def render(self, task: Task) -> Text:
        left = task.time_remaining
        return Text("" if task.finished or left is None else f"{_clock(left)} left", style="progress.remaining")


class StepProgress(Progress):
    """A rich Progress whose steps each leave one line when they end (and, off a terminal, say how far they got
    every ``heartbeat`` seconds); ``live`` draws the bars of the running ones (a terminal)."""

    def __init__(self, console: Console, *, live: bool, heartbeat: float = HEARTBEAT,
                 get_time: Callable[[], float] | None = None, beat_every: float | None = 1.0) -> None:
        columns = (TextColumn("{task.description}", markup=False), BarColumn(), _Count(), TimeElapsedColumn(), _Left())
        super().__init__(*columns, console=console, transient=True, disable=not live, get_time=get_time)
        self.bars = live
        self.heartbeat = heartbeat
        self._said: dict[TaskID, float] = {}  # when each running step last printed a line (or started)
        self._last: dict[TaskID, float] = {}  # when each step last moved
        self._lines = threading.RLock()  # steps move from worker threads: one line per end, whoever ends it
        self._quiet = threading.Event()  # set when the progress stops: the heartbeat thread ends
        self.beat_every = beat_every  # seconds between two calls of beat() by a thread (None: no thread)

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields: Any) -> TaskID:
        task = super().add_task(description, start, total, completed, visible, **fields)
        self._said[task] = self._last[task] = self.get_time()
        return task

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._moved(task_id)

    def update(self, task_id: TaskID, **changes: Any) -> None:
        super().update(task_id, **changes)
        self._moved(task_id)

    def _moved(self, task_id: TaskID) -> None:
        now = self.get_time()
        with self._lines:
            self._last[task_id] = now
            with self._lock:
                task = self._tasks[task_id]
            if task_id not in self._said:
                return
            if task.finished:
                self._end(task, now)
            else:
                self._beat(task, now)

    def beat(self) -> None:
        """Off a terminal, a line for each running step that has said nothing for ``heartbeat`` seconds (a build
        that reports no counts too); called every ``beat_every`` seconds by a thread while the progress runs."""
        now = self.get_time()
        with self._lines:
            for task_id in list(self._said):
                with self._lock:
                    task = self._tasks[task_id]
                self._beat(task, now)

    def _beat(self, task: Task, now: float) -> None:
        if self.bars or now - self._said[task.id] < self.heartbeat:
            return
        self._said[task.id] = now
        left = task.time_remaining
        count = _count(task)
        self._say(f"{task.description}{': ' + count if count else ' still running'}, {_clock(now - self._started(task))} so far"
                  + (f", about {_clock(left)} left" if left is not None else ""))

    def _started(self, task: Task) -> float:
        return task.start_time if task.start_time is not None else self._said[task.id]

    def _end(self, task: Task, at: float) -> None:
        """The step's one line; it leaves the live view."""
        count = _count(task)
        self._say(f"{task.description}{': ' + count if count else ''} in {_clock(at - self._started(task))}")
        del self._said[task.id]
        super().update(task.id, visible=False)

    def _say(self, line: str) -> None:
        self.console.print(Text(line), soft_wrap=True, highlight=False)

    def start(self) -> None:
        super().start()
        if not self.bars and self.beat_every is not None:
            threading.Thread(target=self._beating, name="edgeq-progress", daemon=True).start()

    def _beating(self) -> None:
        assert self.beat_every is not None, "started only with an interval"
        while not self._quiet.wait(self.beat_every):
            self.beat()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:  # the error is the message: no line for the steps it cut short
            with self._lines:
                self._said.clear()
        super().__exit__(kind, exc, tb)

    def stop(self) -> None:
        """End every step still running (one that stopped short, such as a search that met its goal early) at its
        last move, then the live view."""
        self._quiet.set()
        with self._lines:
            for task_id in list(self._said):
                with self._lock:
                    task = self._tasks[task_id]
                self._end(task, self._last[task_id])
        super().stop()


@contextmanager
def progress(enabled: bool = True, console: Console | None = None, *, heartbeat: float = HEARTBEAT) -> Iterator[Progress]:
    """Steps reported to ``console`` (stderr by default): bars on a terminal, lines elsewhere, nothing if not
    ``enabled`` (JSON output)."""
    shown = console or Console(stderr=True, markup=False)
    bar: Progress = (StepProgress(shown, live=shown.is_terminal, heartbeat=heartbeat) if enabled
                     else Progress(console=shown, disable=True))
    with bar:
        yield bar
