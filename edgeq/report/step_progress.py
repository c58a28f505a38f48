"""Device steps of a deploy or rollout as progress (:mod:`edgeq.progress`): a running bar per device and step on a
terminal, with the device's own count where its agent tells one (evaluate, bench), and one line per step when it
ends (``orin-1: build in 41.2 s``, ``orin-1: evaluate: 1078/1078 in 9.3 s``) everywhere."""

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
    counts: dict[tuple[str, str], tuple[int, int]] = {}  # (done, total) the device told of a running step

    def watch(_: RolloutState, entry: Entry) -> None:
        if entry.event not in (Event.STEP, Event.PROGRESS) or entry.device is None or entry.step is None:
            return
        key = (entry.device, entry.step)
        name = clean(f"{labels.get(entry.device, entry.device)}: {entry.step}")
        if entry.event == Event.PROGRESS and key in running:
            counts[key] = (int(entry.data["done"]), int(entry.data["total"]))
            bar.update(running[key], total=counts[key][1], completed=counts[key][0])
        elif entry.event == Event.STEP and entry.status == StepStatus.START:
            running[key] = bar.add_task(name, total=None)
        elif entry.event == Event.STEP and key in running:
            done, total = counts.pop(key, (1, 1))
            if entry.status == StepStatus.OK:
                bar.update(running.pop(key), total=total, completed=total)
            else:  # its line says how far it got
                told = f" at {done}/{total}" if total > 1 else ""
                bar.update(running.pop(key), description=f"{name} {entry.status}{told}", total=1, completed=1)

    return watch
