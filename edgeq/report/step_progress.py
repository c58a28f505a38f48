"""Device steps of a deploy or rollout as progress (:mod:`edgeq.progress`): a running bar per device and step on a
terminal, and one line per step when it ends (``orin-1: build in 41.2 s``) everywhere."""

from __future__ import annotations

from collections.abc import Mapping

from rich.progress import Progress, TaskID

from edgeq.deploy.steps import StepStatus
from edgeq.fleet.journal import Entry, Event
from edgeq.fleet.recorder import Watcher
from edgeq.fleet.state import RolloutState
from edgeq.report.safe_text import clean


def step_watcher(bar: Progress, labels: Mapping[str, str]) -> Watcher:
    """A watcher of a run's journal entries that shows its device steps on ``bar`` (``labels``: device name -> how
    people know the device)."""
    running: dict[tuple[str, str], TaskID] = {}

    def watch(_: RolloutState, entry: Entry) -> None:
        if entry.event != Event.STEP or entry.device is None or entry.step is None:
            return
        key = (entry.device, entry.step)
        name = clean(f"{labels.get(entry.device, entry.device)}: {entry.step}")
        if entry.status == StepStatus.START:
            running[key] = bar.add_task(name, total=None)
        elif key in running:
            ended = "" if entry.status == StepStatus.OK else f" {entry.status}"
            bar.update(running.pop(key), description=name + ended, total=1, completed=1)

    return watch
