"""The journal, state replay, wave verdicts and build-once coordination (no devices needed)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edgeq.deploy.class_engines import ClassEngine, ClassEngines, class_key
from edgeq.deploy.steps import DeviceState, Phase, Pushed, Step, StepStatus
from edgeq.errors import DeviceError, InputError
from edgeq.fleet import journal, state
from edgeq.fleet.journal import Event, Journal, RolloutHeader
from edgeq.fleet.recorder import Recorder
from edgeq.fleet.state import WaveStatus
from edgeq.fleet.verdict import Outcome, judge
from edgeq.hosts import Host


def _header(rollout_id: str = "r1") -> RolloutHeader:
    names = ["a", "b", "c"]
    return RolloutHeader(
        id=rollout_id,
        started_at=0.0,
        operator="me@here",
        recipe=Path("/x/recipe.yaml"),
        recipe_name="demo",
        inventory=None,
        hosts=[Host(address=f"127.0.0.{i + 2}", name=n) for i, n in enumerate(names)],
        targets=dict.fromkeys(names, "local"),
        engine_ids={"local": "e1"},
        waves=[["a"], ["b", "c"]],
        concurrency=2,
        max_failures="0",
        build_each=False,
    )


def _recorder(tmp_path: Path) -> Recorder:
    header = _header()
    return Recorder(Journal.create(tmp_path, header), state.initial(header))


def test_journal_round_trip_and_replay(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    rec.wave(0, WaveStatus.START)
    with rec.step("a", Step.PUSH) as out:
        out.result = Pushed(files_sent=2, files_skipped=1, bytes_sent=300)
        out.remote_seconds = 1.5
    with pytest.raises(DeviceError), rec.step("a", Step.ACTIVATE):
        raise DeviceError("a", "the device stopped answering")
    rec.device("a", Phase.FAILED, error="a: the device stopped answering")
    rec.wave(0, WaveStatus.FAILED, reason="budget")
    rec.end(Outcome.DEVICES_FAILED, 3)

    header, entries = journal.read(rec.journal.path)
    assert header == _header()
    replayed = state.replay(header, entries)
    a = replayed.devices["a"]
    assert [(s.step, s.status) for s in a.steps] == [(Step.PUSH, StepStatus.OK), (Step.ACTIVATE, StepStatus.FAILED)]
    # the typed result comes back from the journal's JSON as the same model
    assert a.last(Step.PUSH, Pushed) == Pushed(files_sent=2, files_skipped=1, bytes_sent=300)
    assert a.steps[0].remote_seconds == 1.5 and a.steps[1].error == "a: the device stopped answering"
    assert a.phase == Phase.FAILED and a.switched and a.needs_rollback
    assert replayed.devices["b"].phase == Phase.PENDING
    assert replayed.waves[0].status == WaveStatus.FAILED and replayed.waves[1].status == WaveStatus.PENDING
    assert replayed.outcome == Outcome.DEVICES_FAILED and replayed.exit_code == 3
    # the live state and the replayed one agree
    assert [(d.name, d.phase, d.switched) for d in rec.state.devices.values()] == [
        (d.name, d.phase, d.switched) for d in replayed.devices.values()
    ]


def test_torn_last_line_is_ignored_other_damage_is_not(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    rec.wave(0, WaveStatus.START)
    with rec.journal.path.open("a") as handle:
        handle.write('{"event": "step", "sta')  # the host died mid-write
    _, entries = journal.read(rec.journal.path)
    assert [e.event for e in entries] == [Event.WAVE]
    with rec.journal.path.open("a") as handle:
        handle.write('\n{"event": "wave", "status": "passed", "wave": 0}\n')
    with pytest.raises(InputError, match="line 3 is not valid JSON"):
        journal.read(rec.journal.path)


def test_a_resumed_journal_cuts_a_torn_line_before_appending(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    rec.wave(0, WaveStatus.START)
    with rec.journal.path.open("a") as handle:
        handle.write('{"event": "step", "sta')  # the host died mid-write
    header, entries = journal.read(rec.journal.path)
    for _ in range(2):  # resumed twice: each time the journal reads back whole
        resumed = Recorder(Journal.reopen(rec.journal.path), state.replay(header, entries))
        resumed.wave(0, WaveStatus.PASSED, reason="done")
        header, entries = journal.read(rec.journal.path)
    assert [(e.event, e.status) for e in entries] == [(Event.WAVE, "start"), (Event.WAVE, "passed"), (Event.WAVE, "passed")]


def test_create_refuses_an_existing_id_and_find_lists_ids(tmp_path: Path) -> None:
    _recorder(tmp_path)
    with pytest.raises(InputError, match="already exists"):
        Journal.create(tmp_path, _header())
    assert journal.find(tmp_path, "r1") == tmp_path / "r1.jsonl"
    with pytest.raises(InputError, match=r"no rollout journal with id 'r2' \(rollouts there: r1\)"):
        journal.find(tmp_path, "r2")


def test_rollback_clears_needs_rollback(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    with rec.step("b", Step.ACTIVATE):
        pass
    rec.device("b", Phase.DONE)
    assert rec.state.devices["b"].needs_rollback
    rec.rollback("b", True, current="e0")
    assert not rec.state.devices["b"].needs_rollback and rec.state.devices["b"].phase == Phase.ROLLED_BACK


def test_verdict() -> None:
    devices = [DeviceState(n, 1) for n in "abcd"]
    devices[0].phase = Phase.FAILED
    for d in devices[1:]:
        d.phase = Phase.DONE
    assert judge(devices, 1).passed
    verdict = judge(devices, 0)
    assert not verdict.passed and verdict.outcome == Outcome.DEVICES_FAILED and "budget allows 0" in verdict.reason
    devices[1].phase, devices[1].error = Phase.GATE_FAILED, "accuracy drop 3.0 > 1.0"
    verdict = judge(devices, 4)
    assert not verdict.passed and verdict.outcome == Outcome.GATE_FAILED and "b: accuracy drop" in verdict.reason


def test_class_key_separates_what_engines_depend_on() -> None:
    base = class_key("Orin Nano", "10.3.0", "8.7", None, "tensorrt")
    assert base == class_key("Orin Nano", "10.3.0", "8.7", None, "tensorrt")
    assert base != class_key("Orin Nano", "10.3.0", "8.7", 0, "tensorrt")
    assert base != class_key("Orin Nano", "8.6.2", "8.7", None, "tensorrt")
    assert base != class_key("Orin NX", "10.3.0", "8.7", None, "tensorrt")


def test_one_builder_per_class_others_wait_and_take_over_on_failure() -> None:
    engines = ClassEngines()
    assert engines.claim("k") is None  # this caller builds
    results: list[ClassEngine | None] = []
    waiting = threading.Barrier(3)

    def waiter() -> None:
        waiting.wait()
        results.append(engines.claim("k"))

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for t in threads:
        t.start()
    waiting.wait()
    engines.abandon("k")  # the builder failed: exactly one waiter becomes the builder
    built = ClassEngine("k", Path("/e"), "b", 2.0)
    while results.count(None) == 0:
        with engines._changed:
            engines._changed.wait(0.05)
    engines.publish(built)
    for t in threads:
        t.join(5)
    assert sorted(results, key=lambda r: r is not None) == [None, built]
    assert engines.claim("k") == built
    assert engines.claim("other") is None


def test_a_builder_silent_past_its_lease_is_taken_over_by_the_next_device() -> None:
    engines = ClassEngines(lease=0.3)
    last_answer = time.monotonic()  # the builder's device never answers again
    assert engines.claim("k", "hung", lambda: last_answer) is None
    assert engines.claim("k", "next") is None  # waits out the lease, then builds itself
    assert time.monotonic() - last_answer >= 0.3
    assert engines.holder("k") == "next"
    engines.abandon("k", "hung")  # the hung builder's late failure frees nothing it no longer holds
    assert engines.holder("k") == "next"
    built = ClassEngine("k", Path("/e"), "next", 1.0)
    engines.publish(built)
    assert engines.claim("k", "third") == built


def test_a_builder_whose_device_answers_keeps_its_lease() -> None:
    engines = ClassEngines(lease=0.1)
    assert engines.claim("k", "builder", time.monotonic) is None  # answers all the time
    results: list[ClassEngine | None] = []
    waiter = threading.Thread(target=lambda: results.append(engines.claim("k", "waiter")))
    waiter.start()
    waiter.join(0.5)  # five leases long: still waiting for the builder
    assert waiter.is_alive() and engines.holder("k") == "builder"
    built = ClassEngine("k", Path("/e"), "builder", 1.0)
    engines.publish(built)
    waiter.join(5)
    assert results == [built]


def test_a_rollback_that_could_not_run_is_pending_in_the_replayed_state_and_the_report(tmp_path: Path) -> None:
    from edgeq.deploy.steps import Status
    from edgeq.fleet.summary import summarize

    rec = _recorder(tmp_path)
    with rec.step("a", Step.STATUS) as out:
        out.result = Status(current="e0", previous=None, engines=["e0"])
    with pytest.raises(DeviceError), rec.step("a", Step.ACTIVATE):
        raise DeviceError("a", "the connection was lost")
    with rec.step("a", Step.STATUS) as out:  # asked after the failed activation: the switch had happened
        out.result = Status(current="e1", previous="e0", engines=["e0", "e1"])
    rec.device("a", Phase.FAILED, error="the connection was lost")
    with pytest.raises(DeviceError), rec.step("a", Step.CONNECT):
        raise DeviceError("a", "timed out")
    rec.rollback("a", False, error="a: timed out")
    header, entries = journal.read(rec.journal.path)
    replayed = state.replay(header, entries).devices["a"]
    assert replayed.phase == Phase.ROLLBACK_PENDING and replayed.needs_rollback
    (device, *_) = summarize(rec.state).devices
    assert (device.phase, device.engine_now, device.rollback) == ("rollback_pending", "e1", "failed: a: timed out")
    rec.rollback("a", True, current="e0")
    assert rec.state.devices["a"].phase == Phase.ROLLED_BACK and not rec.state.devices["a"].needs_rollback
