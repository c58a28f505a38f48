"""`edgeq rollout` on a real fleet: 8 OpenSSH devices on loopback addresses, each with its own home and agent.

The fleet and a first engine on every device are set up once for the module; each test then rolls
out an engine of its own (a recipe variant with a different build setting, hence a different
engine id) and checks, on every device, the engine it runs and a smoke test of it, against the
journal. Faults are real: a stopped sshd, a SIGSTOPped device, the host tool killed with SIGKILL.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeq.fleet import journal
from edgeq.fleet.journal import Event
from tests.cli import run_edgeq
from tests.devices.fleet import start_fleet
from tests.fleet_site import (
    TIMEOUT,
    Site,
    assert_journal_accounts,
    by_name,
    follow,
    open_site,
    rollout_under_fault,
    start_rollout,
    step_done,
)

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

DEVICES = 8


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with open_site(tmp_path_factory.mktemp("rollout"), DEVICES) as site:
        yield site


def test_clean_rollout_builds_once_per_class_and_every_device_switches(site: Site) -> None:
    recipe = site.recipe(2)
    result = site.rollout(recipe, "--concurrency", "4")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    plan = site.plan(recipe)
    assert report["outcome"] == "completed"
    assert [len(w["devices"]) for w in report["waves"]] == [1, 1, 6]
    devices = by_name(report)
    assert all(d["phase"] == "done" and d["engine_now"] == plan.engine_id for d in devices.values())
    assert report["builds"] == 1 and report["installs"] == DEVICES - 1  # one device class on this fleet
    assert devices["dev1"]["engine_source"] == "build"
    assert report["build_seconds_saved"] > 0
    assert site.engines(plan) == dict.fromkeys(site.names, (plan.engine_id, True))
    assert_journal_accounts(report)

    status = run_edgeq("status", "--inventory", site.inventory, "--json")
    assert status.code == 0, status.stderr
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert {row["engine"] for row in rows.values()} == {plan.engine_id}
    assert rows["dev4"]["recipe"] == "tiny" and rows["dev4"]["rollout"] == report["id"] and rows["dev4"]["by"]

    again = site.rollout(recipe)  # every device is already there: verified, nothing rebuilt or switched
    assert again.code == 0, again.stderr
    assert {d["phase"] for d in json.loads(again.stdout)["devices"]} == {"current"}


def test_gate_failure_on_the_canary_stops_with_nothing_changed(site: Site) -> None:
    before = site.engines(site.plan(site.recipe(1)))
    recipe = site.recipe(3, latency_p99_ms=1e-6)  # no engine is that fast
    result = site.rollout(recipe)
    assert result.code == 1, result.stderr
    report = json.loads(result.stdout)
    devices = by_name(report)
    assert report["outcome"] == "gate_failed" and report["waves"][0]["status"] == "failed"
    assert devices["dev1"]["phase"] == "gate_failed" and "p99 latency" in devices["dev1"]["error"]
    assert all(d["phase"] == "pending" for name, d in devices.items() if name != "dev1")
    assert site.engines(site.plan(recipe)) == before
    assert_journal_accounts(report)


def test_a_device_down_before_the_start_costs_only_itself(tmp_path: Path) -> None:
    # A fleet of its own: once its sshd is killed, the device's address may be taken by another
    # fleet on this machine, so it cannot come back for the module's other tests.
    fleet = start_fleet(4)
    try:
        site = Site(fleet, tmp_path)
        first = site.rollout(site.recipe(1), "--waves", "100%")
        assert first.code == 0, first.stderr
        old = site.plan(site.recipe(1)).engine_id
        down = site.device("dev3")
        down.stop()
        recipe = site.recipe(4)
        result = site.rollout(recipe, "--waves", "1,100%", "--max-failures", "1")
        assert result.code == 0, result.stderr
        report = json.loads(result.stdout)
        devices = by_name(report)
        assert devices["dev3"]["phase"] == "failed" and "connection refused" in devices["dev3"]["error"]
        assert [s["step"] for s in devices["dev3"]["steps"]] == ["connect"]
        assert "within the budget of 1" in report["waves"][1]["reason"]
        # the device's own files: still on the engine it ran, which is there, whole
        current = down.home / ".edgeq" / "current"
        assert current.resolve().name == old and (current / "build.json").is_file()
        plan = site.plan(recipe)
        engines = site.engines(plan, skip={"dev3"})
        assert engines == dict.fromkeys(("dev1", "dev2", "dev4"), (plan.engine_id, True))
        assert_journal_accounts(report)
    finally:
        fleet.close()


def test_a_device_that_stops_answering_mid_wave_fails_alone(site: Site) -> None:
    recipe = site.recipe(5)
    # sshd and every process of the device frozen, mid-rollout
    ended = rollout_under_fault(site, recipe, ["--waves", "1,100%", "--max-failures", "1"],
                                lambda entries: step_done(entries, "dev6", "push"), lambda _: site.device("dev6").paused())
    assert ended.code == 0, ended.stderr
    report = json.loads(ended.stdout)
    devices = by_name(report)
    assert devices["dev6"]["phase"] == "failed" and "stopped answering" in devices["dev6"]["error"]
    plan = site.plan(recipe)
    engines = site.engines(plan)
    assert engines.pop("dev6")[1] and set(engines.values()) == {(plan.engine_id, True)}
    assert_journal_accounts(report)


def test_a_wave_over_its_failure_budget_rolls_back_the_devices_it_switched(site: Site) -> None:
    before = site.engines(site.plan(site.recipe(1)))
    recipe = site.recipe(6)
    # one device at a time, so dev2 freezes after its gates passed and before any device switched
    ended = rollout_under_fault(site, recipe, ["--waves", "3", "--concurrency", "1"],
                                lambda entries: step_done(entries, "dev2", "gates"), lambda _: site.device("dev2").paused())
    assert ended.code == 3, ended.stderr
    report = json.loads(ended.stdout)
    devices = by_name(report)
    assert report["outcome"] == "devices_failed"
    assert devices["dev2"]["phase"] == "failed"
    for name in ("dev1", "dev3"):  # switched, then returned to their previous engine and smoke-tested there
        assert devices[name]["phase"] == "rolled_back" and devices[name]["rollback"] == "ok"
        assert [s["step"] for s in devices[name]["steps"]][-2:] == ["rollback", "verify"]
    assert all(devices[f"dev{i}"]["phase"] == "pending" for i in range(4, 9))
    assert site.engines(site.plan(recipe)) == before
    assert_journal_accounts(report)


def test_killed_host_tool_resumes_without_redoing_finished_devices(site: Site) -> None:
    recipe = site.recipe(7)
    proc, journals = start_rollout(site, recipe, "--concurrency", "3")
    try:
        path = follow(journals, lambda entries: any(e.step == "activate" and e.wave == 2 and e.status == "ok" for e in entries), proc)
        proc.send_signal(signal.SIGKILL)  # no clean-up of any kind
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, before = journal.read(path)
    done_before = {e.device for e in before if e.event == Event.DEVICE and e.status == "done"}
    assert {"dev1", "dev2"} <= done_before and before[-1].event != Event.END

    result = run_edgeq("rollout", recipe, "--resume", path.stem, "--timeout", TIMEOUT, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    _, after = journal.read(path)
    resumed = after[len(before):]
    assert resumed[0].event == Event.RESUME
    assert not [e for e in resumed if e.device in done_before], "a finished device was worked on again"
    plan = site.plan(recipe)
    assert {d["phase"] for d in report["devices"]} == {"done"}
    assert site.engines(plan) == dict.fromkeys(site.names, (plan.engine_id, True))
    assert_journal_accounts(report)

    finished = run_edgeq("rollout", recipe, "--resume", path.stem, "--json")  # nothing left to do
    assert finished.code == 0 and json.loads(finished.stdout)["outcome"] == "completed"
