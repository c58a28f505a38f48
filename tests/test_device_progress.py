"""The agent tells how far a long command got (``edgeq-progress DONE TOTAL`` on stderr); the transport takes those
lines out of stderr as they arrive and hands them on; a deploy draws them as the step's count."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from edgeq.deploy.steps import Step, StepStatus
from edgeq.device import progress as device_progress
from edgeq.fleet.journal import Entry, Event
from edgeq.progress import StepProgress
from edgeq.remote import Timeouts, Transport
from edgeq.report.step_progress import step_watcher

FAST = Timeouts(connect=2.0, channel=2.0, command=20.0)


def test_the_agent_reports_at_most_every_interval_and_always_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    device_progress.advance(5, now=0.0)  # nothing expected: nothing said
    device_progress.expect(10)
    for i in range(10):
        device_progress.advance(1, now=10.0 + 0.2 * i)
    device_progress.expect(0)  # the next command expects nothing
    device_progress.advance(1, now=99.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["edgeq-progress 1 10", "edgeq-progress 4 10", "edgeq-progress 7 10", "edgeq-progress 10 10"]


# stderr written in pieces that cut lines in two, with text and look-alikes around the progress lines
SCRIPT = r"""
import sys, time
pieces = ["warming up\nedgeq-progr", "ess 3 10\n", "edgeq-progress 7 10\nedgeq-progress 9 x\n",
          "edgeq-progress 11 10\nreal text\n", "edgeq-progress 10 10\n", "no newline at the end"]
for piece in pieces:
    sys.stderr.write(piece)
    sys.stderr.flush()
print("{}")
"""


def test_progress_lines_leave_stderr_and_reach_the_listener(transport: Transport) -> None:
    told: list[tuple[int, int]] = []
    transport.progress = lambda done, total: told.append((done, total))
    result = transport.run([transport.python, "-c", SCRIPT]).check()
    assert told == [(3, 10), (7, 10), (10, 10)]
    assert result.stderr == "warming up\nedgeq-progress 9 x\nedgeq-progress 11 10\nreal text\nno newline at the end"
    transport.progress = None  # nobody listens: still out of stderr
    assert "edgeq-progress 3" not in transport.run([transport.python, "-c", SCRIPT]).stderr


def test_a_device_count_becomes_the_step_count() -> None:
    out = io.StringIO()
    bar = StepProgress(Console(file=out, width=40, color_system=None), live=False, beat_every=None)
    watch = step_watcher(bar, {"dev1": "nvidia@orin"})

    def entry(event: Event, status: str, step: Step, **data: int) -> Entry:
        return Entry(event=event, status=status, device="dev1", step=step, data=data)

    with bar:
        for step, ends in ((Step.EVALUATE, StepStatus.OK), (Step.BENCH, StepStatus.FAILED)):
            watch(None, entry(Event.STEP, StepStatus.START, step))  # type: ignore[arg-type]  # the watcher ignores the state
            watch(None, entry(Event.PROGRESS, StepStatus.RUNNING, step, done=32, total=96))  # type: ignore[arg-type]
            watch(None, entry(Event.STEP, ends, step))  # type: ignore[arg-type]
    lines = [line.split(" in ")[0] for line in out.getvalue().splitlines()]
    assert lines == ["nvidia@orin: evaluate: 96/96", "nvidia@orin: bench failed at 32/96"]
