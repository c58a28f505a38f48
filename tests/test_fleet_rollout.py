"""`edgeq rollout` on a real fleet: 8 OpenSSH devices on loopback addresses, each with its own home and agent.

The fleet and a first engine on every device are set up once for the module; each test then rolls
out an engine of its own (a recipe variant with a different build setting, hence a different
engine id) and checks, on every device, the engine it runs and a smoke test of it, against the
journal. Faults are real: a stopped sshd, a SIGSTOPped device, the host tool killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from edgeq import targets
from edgeq.deploy.plan import DeployPlan, make_plan
from edgeq.deploy.session import DeviceSession
from edgeq.fleet import journal
from edgeq.fleet.journal import Event
from edgeq.hosts import host_name, load_inventory
from edgeq.recipe import load as load_recipe
from edgeq.remote.group import on_hosts
from edgeq.remote.transport import Transport
from tests.calibrate_nets import fire_net, write_recipe
from tests.cli import CliResult, run_edgeq
from tests.devices.fleet import Device, Fleet, missing_prerequisites, start_fleet

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

DEVICES = 8
TIMEOUT = "4"  # seconds a device may stay silent in these tests


class Site:
    """The fleet, its inventory, and recipe variants that share one model and data set."""

    def __init__(self, fleet: Fleet, folder: Path) -> None:
        self.fleet = fleet
        self.folder = folder
        self.base = write_recipe(folder, fire_net())
        self.inventory = folder / "fleet.yaml"
        hosts = {
            f"dev{i + 1}": {
                "address": h.address,
                "user": h.user,
                "key": str(h.key),
                "known_hosts": str(h.known_hosts),
                "python": h.python,
                "target": "local",
                "groups": ["canary"] if i == 0 else ["line"],
            }
            for i, h in enumerate(fleet.hosts)
        }
        self.inventory.write_text(yaml.safe_dump({"hosts": hosts}, sort_keys=False))
        self.names = list(hosts)

    def recipe(self, version: int, **budget: float) -> Path:
        """A variant whose engine id differs from every other version's (workspace_mb is part of it)."""
        data = yaml.safe_load(self.base.read_text())
        data["build"] = {"workspace_mb": 1000 + version}
        data["budget"].update(budget)
        path = self.folder / f"recipe-v{version}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def plan(self, recipe: Path) -> DeployPlan:
        return make_plan(load_recipe(recipe), targets.resolve("local"), progress=False)

    def device(self, name: str) -> Device:
        return self.fleet[self.names.index(name)]

    def engines(self, plan: DeployPlan, skip: frozenset[str] | set[str] = frozenset()) -> dict[str, tuple[str | None, bool]]:
        """Each device's active engine and whether a smoke test of it passes, asked over SSH."""

        def ask(transport: Transport) -> tuple[str | None, bool]:
            session = DeviceSession(transport)
            current = session.status().current
            return current, current is not None and session.smoke(plan, "current").passed

        by_label = {h.label: host_name(h) for h in load_inventory(self.inventory)}
        hosts = [h for h in load_inventory(self.inventory) if host_name(h) not in skip]
        outcomes = on_hosts(hosts, ask, limit=DEVICES)
        for o in outcomes:
            assert o.ok, o.error
        return {by_label[o.host.label]: o.value for o in outcomes}

    def rollout(self, recipe: Path, *args: str) -> CliResult:
        return run_edgeq("rollout", recipe, "--inventory", self.inventory, "--timeout", TIMEOUT, "--json", *args)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    reason = missing_prerequisites()
    if reason:
        pytest.skip(reason)
    fleet = start_fleet(DEVICES)
    try:
        site = Site(fleet, tmp_path_factory.mktemp("rollout"))
        first = site.rollout(site.recipe(1), "--waves", "100%", "--concurrency", "8")
        assert first.code == 0, first.stderr + first.stdout
        yield site
    finally:
        fleet.close()


def _journal(report: dict) -> tuple[journal.RolloutHeader, list[journal.Entry]]:
    return journal.read(Path(report["recipe"]).parent / "edgeq-out" / "rollouts" / f"{report['id']}.jsonl")


def _assert_journal_accounts(report: dict) -> None:
    """Every step that started ended; every device of a started wave has an outcome; later waves have nothing."""
    header, entries = _journal(report)
    open_steps: dict[tuple[str, str], int] = {}
    for e in entries:
        if e.event == Event.STEP:
            key = (e.device, e.step)
            open_steps[key] = open_steps.get(key, 0) + (1 if e.status == "start" else -1)
    assert all(count == 0 for count in open_steps.values()), open_steps
    started = {e.wave for e in entries if e.event == Event.WAVE and e.status == "start"}
    for index, names in enumerate(header.waves):
        for name in names:
            outcomes = [e for e in entries if e.device == name and e.event == Event.DEVICE]
            if index in started:
                assert outcomes, f"{name} has no outcome in the journal"
            else:
                assert not [e for e in entries if e.device == name], f"{name} was touched in an unstarted wave"
    assert entries[-1].event == Event.END and entries[-1].status == report["outcome"]


def _by_name(report: dict) -> dict[str, dict]:
    return {d["name"]: d for d in report["devices"]}


def test_clean_rollout_builds_once_per_class_and_every_device_switches(site: Site) -> None:
    recipe = site.recipe(2)
    result = site.rollout(recipe, "--concurrency", "4")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    plan = site.plan(recipe)
    assert report["outcome"] == "completed"
    assert [len(w["devices"]) for w in report["waves"]] == [1, 1, 6]
    devices = _by_name(report)
    assert all(d["phase"] == "done" and d["engine_now"] == plan.engine_id for d in devices.values())
    assert report["builds"] == 1 and report["installs"] == DEVICES - 1  # one device class on this fleet
    assert devices["dev1"]["engine_source"] == "build"
    assert report["build_seconds_saved"] > 0
    assert site.engines(plan) == dict.fromkeys(site.names, (plan.engine_id, True))
    _assert_journal_accounts(report)

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
    devices = _by_name(report)
    assert report["outcome"] == "gate_failed" and report["waves"][0]["status"] == "failed"
    assert devices["dev1"]["phase"] == "gate_failed" and "p99 latency" in devices["dev1"]["error"]
    assert all(d["phase"] == "pending" for name, d in devices.items() if name != "dev1")
    assert site.engines(site.plan(recipe)) == before
    _assert_journal_accounts(report)


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
        devices = _by_name(report)
        assert devices["dev3"]["phase"] == "failed" and "connection refused" in devices["dev3"]["error"]
        assert [s["step"] for s in devices["dev3"]["steps"]] == ["connect"]
        assert "within the budget of 1" in report["waves"][1]["reason"]
        # the device's own files: still on the engine it ran, which is there, whole
        current = down.home / ".edgeq" / "current"
        assert current.resolve().name == old and (current / "build.json").is_file()
        plan = site.plan(recipe)
        engines = site.engines(plan, skip={"dev3"})
        assert engines == dict.fromkeys(("dev1", "dev2", "dev4"), (plan.engine_id, True))
        _assert_journal_accounts(report)
    finally:
        fleet.close()


def _follow(path_glob: Callable[[], list[Path]], condition: Callable[[list[journal.Entry]], bool], proc: subprocess.Popen, deadline: float = 300) -> Path:
    """Wait until a rollout journal appears and its entries satisfy ``condition`` (reading the file, not the clock)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for path in path_glob():
            try:
                _, entries = journal.read(path)
            except Exception:  # noqa: BLE001 (the header is being written)
                continue
            if condition(entries):
                return path
        if proc.poll() is not None:
            raise AssertionError(f"edgeq exited with {proc.returncode} before the journal showed the awaited step")
        time.sleep(0.02)
    raise AssertionError("the journal never showed the awaited step")


def _step(entries: list[journal.Entry], device: str, step: str, status: str = "ok") -> bool:
    return any(e.event == Event.STEP and e.device == device and e.step == step and e.status == status for e in entries)


def _start(site: Site, recipe: Path, *args: str) -> tuple[subprocess.Popen, Callable[[], list[Path]]]:
    folder = site.folder / "edgeq-out" / "rollouts"
    existing = set(folder.glob("*.jsonl"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeq", "rollout", str(recipe), "--inventory", str(site.inventory), "--timeout", TIMEOUT, "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return proc, lambda: [p for p in folder.glob("*.jsonl") if p not in existing]


def test_a_device_that_stops_answering_mid_wave_fails_alone(site: Site) -> None:
    recipe = site.recipe(5)
    hung = site.device("dev6")
    proc, journals = _start(site, recipe, "--waves", "1,100%", "--max-failures", "1")
    try:
        _follow(journals, lambda entries: _step(entries, "dev6", "push"), proc)
        hung.pause()  # sshd and every process of the device frozen, mid-rollout
        out, err = proc.communicate(timeout=300)
    finally:
        hung.resume()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    report = json.loads(out)
    devices = _by_name(report)
    assert devices["dev6"]["phase"] == "failed" and "stopped answering" in devices["dev6"]["error"]
    plan = site.plan(recipe)
    engines = site.engines(plan)
    assert engines.pop("dev6")[1] and set(engines.values()) == {(plan.engine_id, True)}
    _assert_journal_accounts(report)


def test_a_wave_over_its_failure_budget_rolls_back_the_devices_it_switched(site: Site) -> None:
    before = site.engines(site.plan(site.recipe(1)))
    recipe = site.recipe(6)
    hung = site.device("dev2")
    # one device at a time, so dev2 freezes after its gates passed and before any device switched
    proc, journals = _start(site, recipe, "--waves", "3", "--concurrency", "1")
    try:
        _follow(journals, lambda entries: _step(entries, "dev2", "gates"), proc)
        hung.pause()
        out, err = proc.communicate(timeout=300)
    finally:
        hung.resume()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    report = json.loads(out)
    devices = _by_name(report)
    assert report["outcome"] == "devices_failed"
    assert devices["dev2"]["phase"] == "failed"
    for name in ("dev1", "dev3"):  # switched, then returned to their previous engine and smoke-tested there
        assert devices[name]["phase"] == "rolled_back" and devices[name]["rollback"] == "ok"
        assert [s["step"] for s in devices[name]["steps"]][-2:] == ["rollback", "verify"]
    assert all(devices[f"dev{i}"]["phase"] == "pending" for i in range(4, 9))
    assert site.engines(site.plan(recipe)) == before
    _assert_journal_accounts(report)


def test_killed_host_tool_resumes_without_redoing_finished_devices(site: Site) -> None:
    recipe = site.recipe(7)
    proc, journals = _start(site, recipe, "--concurrency", "3")
    try:
        path = _follow(journals, lambda entries: any(e.step == "activate" and e.wave == 2 and e.status == "ok" for e in entries), proc)
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
    _assert_journal_accounts(report)

    finished = run_edgeq("rollout", recipe, "--resume", path.stem, "--json")  # nothing left to do
    assert finished.code == 0 and json.loads(finished.stdout)["outcome"] == "completed"
