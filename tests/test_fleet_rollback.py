"""Rollback that converges, on a real fleet of 3 loopback OpenSSH devices: a device that cannot be reached while
its wave rolls back is `rollback_pending` (never "working"), and `rollout --resume` of the ended rollout or
`edgeq rollback` returns it to its previous engine, verified by smoke; keep-last-N removes old engines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeq.deploy.session import DeviceSession
from edgeq.fleet.journal import Event
from edgeq.remote.transport import SSHTransport
from tests.cli import run_edgeq
from tests.fleet_site import Site, by_name, journal_of, open_site, rollout_under_fault, step_done

pytestmark = [pytest.mark.ssh, pytest.mark.slow]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with open_site(tmp_path_factory.mktemp("rollback"), 3) as site:
        yield site


def _rollout_with_dev2_dropped_after_its_switch(site: Site, recipe: Path) -> dict:
    """One wave of 3; dev2 is cut off by a firewall drop as soon as it switched: its smoke test hangs, the wave
    fails, and dev2 cannot be reached for its rollback. The drop is lifted once the rollout has ended."""
    ended = rollout_under_fault(site, recipe, ["--waves", "100%", "--concurrency", "3"],
                                lambda entries: step_done(entries, "dev2", "activate"), lambda _: site.device("dev2").dropped())
    assert ended.code == 3, ended.stderr
    return json.loads(ended.stdout)


def _current(site: Site, name: str) -> str | None:
    with DeviceSession(SSHTransport.open(site.device(name).host)) as session:
        return session.status().current


def _assert_pending(site: Site, report: dict, new: str) -> None:
    devices = by_name(report)
    assert report["outcome"] == "devices_failed"
    assert devices["dev2"]["phase"] == "rollback_pending" and devices["dev2"]["rollback"].startswith("failed")
    assert devices["dev2"]["engine_now"] == new  # its switch was journaled; the rollback never ran
    assert {devices[n]["phase"] for n in ("dev1", "dev3")} == {"rolled_back"}
    _, entries = journal_of(report)
    assert entries[-1].event == Event.END and entries[-1].data["rollback_pending"] == ["dev2"]
    assert _current(site, "dev2") == new  # on the failed wave's engine, for real


def test_resume_of_an_ended_rollout_rolls_back_the_device_that_was_unreachable(site: Site) -> None:
    old = site.plan(site.recipe(1))
    recipe = site.recipe(2)
    report = _rollout_with_dev2_dropped_after_its_switch(site, recipe)
    _assert_pending(site, report, site.plan(recipe).engine_id)

    resumed = run_edgeq("rollout", recipe, "--resume", report["id"], "--timeout", "4", "--json")
    assert resumed.code == 3, resumed.stderr  # the rollout still failed; nothing is pending any more
    after = by_name(json.loads(resumed.stdout))
    assert after["dev2"]["phase"] == "rolled_back" and after["dev2"]["rollback"] == "ok"
    assert after["dev2"]["engine_now"] == old.engine_id
    assert [s["step"] for s in after["dev2"]["steps"]][-2:] == ["rollback", "verify"]
    assert site.engines(old) == dict.fromkeys(site.names, (old.engine_id, True))
    _, entries = journal_of(report)
    assert "rollback_pending" not in entries[-1].data

    again = run_edgeq("rollout", recipe, "--resume", report["id"], "--json")  # nothing left: nothing journaled
    assert again.code == 3
    assert len(journal_of(report)[1]) == len(entries)


def test_edgeq_rollback_returns_every_device_to_its_previous_engine(site: Site) -> None:
    old = site.plan(site.recipe(1))
    recipe = site.recipe(3)
    report = _rollout_with_dev2_dropped_after_its_switch(site, recipe)
    _assert_pending(site, report, site.plan(recipe).engine_id)

    result = run_edgeq("rollback", recipe, "--inventory", site.inventory, "--timeout", "4", "--json")
    assert result.code == 0, result.stderr + result.stdout
    devices = by_name(json.loads(result.stdout))
    assert {d["phase"] for d in devices.values()} == {"rolled_back"}
    assert {d["engine_now"] for d in devices.values()} == {old.engine_id}
    assert all(d["smoke_passed"] for d in devices.values())
    assert site.engines(old) == dict.fromkeys(site.names, (old.engine_id, True))


def test_resume_of_a_completed_rollout_retries_the_device_that_failed(site: Site) -> None:
    recipe = site.recipe(7)
    with site.device("dev3").dropped():
        result = site.rollout(recipe, "--waves", "100%", "--max-failures", "1")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert by_name(report)["dev3"]["phase"] == "failed" and report["outcome"] == "completed"
    resumed = run_edgeq("rollout", recipe, "--resume", report["id"], "--timeout", "4", "--json")
    assert resumed.code == 0, resumed.stderr
    assert {d["phase"] for d in json.loads(resumed.stdout)["devices"]} == {"done"}
    plan = site.plan(recipe)
    assert site.engines(plan) == dict.fromkeys(site.names, (plan.engine_id, True))


def test_rollback_of_an_unreachable_device_is_pending_and_exits_3(site: Site) -> None:
    with site.device("dev3").dropped():
        result = run_edgeq("rollback", site.recipe(1), "--inventory", site.inventory, "--limit", "dev3", "--timeout", "2", "--json")
    assert result.code == 3, result.stderr
    devices = by_name(json.loads(result.stdout))
    assert devices["dev3"]["phase"] == "rollback_pending"


def test_keep_last_n_removes_old_engines_after_the_switch(site: Site) -> None:
    engines = site.device("dev1").home / ".edgeq" / "engines"

    def on_disk() -> set[str]:
        return {p.name for p in engines.iterdir() if not p.name.startswith(".")}

    kept = site.rollout(site.recipe(4), "--waves", "100%", "--keep", "9")  # nothing to remove yet
    assert kept.code == 0, kept.stderr
    earlier = on_disk()
    assert len(earlier) >= 3, earlier  # the engines of this module's rollouts
    recipe = site.recipe(5)
    result = site.rollout(recipe, "--waves", "100%", "--keep", "0")
    assert result.code == 0, result.stderr
    new, previous = site.plan(recipe).engine_id, site.plan(site.recipe(4)).engine_id
    with DeviceSession(SSHTransport.open(site.device("dev1").host)) as session:
        status = session.status()
    assert (status.current, status.previous) == (new, previous)
    assert on_disk() == {new, previous}  # never the current or the previous one; every other one gone
    (gc,) = [s for s in by_name(json.loads(result.stdout))["dev1"]["steps"] if s["step"] == "gc"]
    assert gc["status"] == "ok" and set(gc["result"]["gc"]["removed"]) == earlier - {previous}


def test_a_frozen_class_builder_is_taken_over_after_the_timeout(site: Site) -> None:
    def builder(entries: list) -> str | None:
        return next((e.device for e in entries if e.event == Event.STEP and e.step == "class" and e.status == "ok"
                     and e.data.get("result", {}).get("role") == "build"), None)

    recipe = site.recipe(6)
    # the builder's sshd and agent frozen as its build starts
    ended = rollout_under_fault(site, recipe, ["--waves", "100%", "--concurrency", "3", "--max-failures", "1"],
                                lambda entries: builder(entries) is not None,
                                lambda entries: site.device(builder(entries)).paused())
    assert ended.code == 0, ended.stderr
    report = json.loads(ended.stdout)
    devices = by_name(report)
    frozen = builder(ended.entries())
    assert devices[frozen]["phase"] == "failed" and "stopped answering" in devices[frozen]["error"]
    others = [d for n, d in devices.items() if n != frozen]
    assert {d["phase"] for d in others} == {"done"}
    assert sorted(d["engine_source"] for d in others) == ["build", "install"]  # one took the class's build over
    assert max(d["wait_seconds"] for d in others) < 4 + 4  # waited about one --timeout (4 s) for the frozen builder
