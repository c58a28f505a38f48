"""Progress a person can read everywhere: bars with counts and time left on a terminal, one line per step with its
time elsewhere (pipes, CI logs), and paths printed whole however narrow the console."""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from edgeq.cli import app as cli_app
from edgeq.progress import StepProgress, progress
from tests.calibrate_nets import fire_net, write_recipe
from tests.cli import run_edgeq


class Clock:
    """A clock the test moves: every time below is exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _log(**options) -> tuple[StepProgress, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, width=40, force_terminal=options.pop("terminal", False), color_system=None)
    return StepProgress(console, get_time=clock, beat_every=None, **options), out, clock  # the test calls beat()


def test_off_a_terminal_each_step_is_one_line_with_its_count_and_time() -> None:
    bar, out, clock = _log(live=False, heartbeat=1e9)
    with bar:
        task = bar.add_task("calibration statistics", total=256)
        for _ in range(4):
            clock.now += 0.5
            bar.advance(task, 64)
        clock.now += 3.0  # later work is not the step's
        other = bar.add_task("one piece of work", total=None)
        clock.now += 61.5
        bar.update(other, total=1, completed=1)
    assert out.getvalue().splitlines() == ["calibration statistics: 256/256 in 2.00 s", "one piece of work in 1 min 02 s"]


def test_a_step_that_stops_short_ends_at_its_last_move() -> None:
    bar, out, clock = _log(live=False, heartbeat=1e9)
    with bar:
        task = bar.add_task("fitting the accuracy budget", total=12)
        clock.now += 4.0
        bar.advance(task, 3)
        clock.now += 50.0  # writing artifacts after the search met the budget
    assert out.getvalue().splitlines() == ["fitting the accuracy budget: 3/12 in 4.00 s"]


def test_a_step_cut_short_by_an_error_leaves_the_error_alone() -> None:
    bar, out, _ = _log(live=False, heartbeat=1e9)
    with pytest.raises(ValueError), bar:
        done = bar.add_task("calibration statistics", total=2)
        bar.advance(done, 2)
        bar.advance(bar.add_task("FP32 and INT8 on validation data", total=48), 5)
        raise ValueError("a broken image")
    assert out.getvalue().splitlines() == ["calibration statistics: 2/2 in 0.00 s"]


def test_a_long_step_says_how_far_it_got_every_heartbeat() -> None:
    bar, out, clock = _log(live=False, heartbeat=30.0)
    with bar:
        task = bar.add_task("FP32 and INT8 on validation data", total=100)
        for _ in range(10):
            clock.now += 10.0
            bar.advance(task, 10)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("FP32 and INT8 on validation data: 30/100, 30.0 s so far, about ")
    assert [line.split(",")[0] for line in lines] == [f"FP32 and INT8 on validation data: {n}/100" for n in (30, 60, 90)] + [
        "FP32 and INT8 on validation data: 100/100 in 1 min 40 s"]
    left = float(re.search(r"about ([\d.]+) s left", lines[1]).group(1))
    assert left == pytest.approx(40.0, abs=10.0)  # 40 % to go at 1 %/s


def test_a_long_step_without_counts_still_says_it_runs() -> None:
    bar, out, clock = _log(live=False, heartbeat=30.0)
    with bar:
        task = bar.add_task("orin-1: build", total=None)
        clock.now += 29.0
        bar.beat()
        clock.now += 2.0
        bar.beat()
        bar.beat()  # said: the next line is due in 30 s
        clock.now += 59.0
        bar.beat()
        clock.now += 1.0
        bar.update(task, total=1, completed=1)
    assert out.getvalue().splitlines() == ["orin-1: build still running, 31.0 s so far",
                                           "orin-1: build still running, 1 min 30 s so far", "orin-1: build in 1 min 31 s"]


class _Written(io.StringIO):
    """Output that signals its first write."""

    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def write(self, text: str) -> int:
        self.event.set()
        return super().write(text)


def test_the_heartbeat_runs_on_its_own_while_a_step_is_silent() -> None:
    out, clock = _Written(), Clock()
    bar = StepProgress(Console(file=out, width=40, color_system=None), live=False, heartbeat=30.0, get_time=clock,
                       beat_every=0.01)
    with bar:
        bar.add_task("orin-1: build", total=None)
        clock.now += 45.0  # nothing moves; only the heartbeat thread can speak
        assert out.event.wait(10), "no heartbeat line"
    assert out.getvalue().splitlines()[0] == "orin-1: build still running, 45.0 s so far"


def test_on_a_terminal_the_bar_shows_count_elapsed_and_time_left() -> None:
    bar, out, clock = _log(live=True, terminal=True)
    with bar:
        task = bar.add_task("calibration statistics", total=256)
        for _ in range(3):
            clock.now += 1.0
            bar.advance(task, 32)
        table = Console(file=io.StringIO(), width=120, color_system=None)
        table.print(bar.make_tasks_table(bar.tasks))
        shown = table.file.getvalue()
        assert "calibration statistics" in shown and "96/256" in shown and "0:00:03" in shown
        assert re.search(r"[\d.]+ s left", shown), shown
        bar.advance(task, 160)
    assert "calibration statistics: 256/256 in 3.00 s" in out.getvalue()


def test_nothing_is_printed_for_json_output() -> None:
    out = io.StringIO()
    with progress(False, Console(file=out)) as bar:
        bar.advance(bar.add_task("calibration statistics", total=2), 2)
    assert out.getvalue() == ""


def test_calibrate_piped_prints_a_line_per_step_and_whole_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path.joinpath(*[f"a-rather-long-folder-name-{i}" for i in range(4)])
    recipe = write_recipe(deep, fire_net())
    monkeypatch.setattr(cli_app.console, "_width", 40)  # restored to what it was (the width property would pin it)
    result = run_edgeq("calibrate", recipe, "--target", "local", "--sensitivity")
    assert result.code == 0, result.stderr
    steps = [line.split(" in ")[0] for line in result.stderr.splitlines()]
    assert steps[:2] == ["calibration statistics: 64/64", "FP32 and INT8 on validation data: 48/48"]
    assert "layer sensitivity: 4/4" in steps[2:]  # with the steps the range method calls for
    assert all(re.search(r" in \d+\.\d\d s$", line) for line in result.stderr.splitlines())
    folder = deep / "edgeq-out" / "tiny" / "local"
    assert f"artifacts in {folder}:" in result.stdout.splitlines()
    for name in ("model.qdq.onnx", "report.json", "manifest.json"):
        assert f"  {folder / name}" in result.stdout.splitlines()  # one whole line each, at 40 columns


@pytest.mark.slow
def test_deploy_piped_prints_a_line_per_device_step_and_whole_report_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path.joinpath(*[f"a-rather-long-folder-name-{i}" for i in range(4)])
    recipe = write_recipe(deep, fire_net())
    monkeypatch.setattr(cli_app.console, "_width", 40)  # restored to what it was (the width property would pin it)
    result = run_edgeq("deploy", recipe, "--target", "local", "--workdir", tmp_path / "device")
    assert result.code == 0, result.stderr
    lines = result.stderr.splitlines()
    steps = [line.split(" in ")[0] for line in lines if line.startswith("local: ")]  # after calibration's
    # evaluate and bench with the agent's own count: 48 samples through INT8 and FP32; 2 x (10 warm-up + 200) timed calls
    assert steps == [f"local: {step}" for step in ("connect", "push", "status", "probe", "build", "evaluate: 96/96",
                                                    "bench: 420/420", "smoke", "gates", "activate", "verify", "gc")]
    assert all(re.search(r" in \d+\.\d\d s$", line) for line in lines)
    folder = deep / "edgeq-out" / "tiny" / "local" / "deploy" / "local"
    assert f"report: {folder / 'report.json'}" in result.stdout.splitlines()
    assert f"page: {folder / 'report.html'}" in result.stdout.splitlines()


@pytest.mark.ssh
@pytest.mark.slow
def test_rollout_piped_prints_a_line_per_device_step(tmp_path: Path) -> None:
    """Off a terminal the live view is replaced by lines; two loopback OpenSSH devices of one class."""
    from tests.devices.fleet import missing_prerequisites, start_fleet

    reason = missing_prerequisites()
    if reason:
        pytest.skip(reason)
    recipe = write_recipe(tmp_path / "r", fire_net())
    fleet = start_fleet(2)
    try:
        hosts = {f"dev{i + 1}": {"address": h.address, "user": h.user, "key": str(h.key), "known_hosts": str(h.known_hosts),
                                 "python": h.python, "target": "local"} for i, h in enumerate(fleet.hosts)}
        inventory = tmp_path / "fleet.yaml"
        inventory.write_text(yaml.safe_dump({"hosts": hosts}))
        result = run_edgeq("rollout", recipe, "--inventory", inventory, "--waves", "100%", "--timeout", "10")
    finally:
        fleet.close()
    assert result.code == 0, result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert all(re.search(r" in \d+\.\d\d s$", line) for line in lines), lines
    steps = {": ".join(line.split(" in ")[0].split(": ")[:2]) for line in lines}  # without the counts
    assert {"dev1: evaluate: 96/96", "dev2: evaluate: 96/96"} <= {line.split(" in ")[0] for line in lines}
    for device in ("dev1", "dev2"):
        assert {f"{device}: {step}" for step in ("connect", "push", "probe", "class", "evaluate", "bench", "activate")} <= steps
    assert len(steps & {"dev1: build", "dev2: build"}) == 1 and len(steps & {"dev1: install", "dev2: install"}) == 1
    assert any(line.startswith("report: ") and line.endswith(".json") for line in result.stdout.splitlines())
