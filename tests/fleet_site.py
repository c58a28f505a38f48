"""A fleet of loopback devices with an inventory, recipe variants and the means to fault a rollout midway:
the scaffolding shared by the rollout and rollback tests.

:func:`rollout_under_fault` runs ``edgeq rollout`` in a subprocess, waits (on its journal, not the clock) for
a step, applies a fault that lasts until the rollout ends (a frozen or cut-off device), and returns what the
rollout printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
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
        outcomes = on_hosts(hosts, ask, limit=len(hosts))
        for o in outcomes:
            assert o.ok, o.error
        return {by_label[o.host.label]: o.value for o in outcomes}

    def rollout(self, recipe: Path, *args: str) -> CliResult:
        return run_edgeq("rollout", recipe, "--inventory", self.inventory, "--timeout", TIMEOUT, "--json", *args)


@contextmanager
def open_site(folder: Path, devices: int) -> Iterator[Site]:
    """A fleet of ``devices`` with the first engine (recipe version 1) on every one; skips without the prerequisites."""
    reason = missing_prerequisites()
    if reason:
        pytest.skip(reason)
    fleet = start_fleet(devices)
    try:
        site = Site(fleet, folder)
        first = site.rollout(site.recipe(1), "--waves", "100%", "--concurrency", str(devices))
        assert first.code == 0, first.stderr + first.stdout
        yield site
    finally:
        fleet.close()


def journal_of(report: dict) -> tuple[journal.RolloutHeader, list[journal.Entry]]:
    return journal.read(Path(report["recipe"]).parent / "edgeq-out" / "rollouts" / f"{report['id']}.jsonl")


def assert_journal_accounts(report: dict) -> None:
    """Every step that started ended; every device of a started wave has an outcome; later waves have nothing."""
    header, entries = journal_of(report)
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


def by_name(report: dict) -> dict[str, dict]:
    return {d["name"]: d for d in report["devices"]}


def follow(path_glob: Callable[[], list[Path]], condition: Callable[[list[journal.Entry]], bool], proc: subprocess.Popen, deadline: float = 300) -> Path:
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


def step_done(entries: list[journal.Entry], device: str, step: str, status: str = "ok") -> bool:
    return any(e.event == Event.STEP and e.device == device and e.step == step and e.status == status for e in entries)


def start_rollout(site: Site, recipe: Path, *args: str) -> tuple[subprocess.Popen, Callable[[], list[Path]]]:
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


@dataclass
class Ended:
    """What a faulted rollout printed, and its journal."""

    code: int
    stdout: str
    stderr: str
    journal: Path

    def entries(self) -> list[journal.Entry]:
        return journal.read(self.journal)[1]


def rollout_under_fault(
    site: Site,
    recipe: Path,
    args: list[str],
    when: Callable[[list[journal.Entry]], bool],
    fault: Callable[[list[journal.Entry]], AbstractContextManager[object]],
) -> Ended:
    """Roll ``recipe`` out with ``args``; once the journal satisfies ``when``, hold ``fault(entries)`` until it ends."""
    proc, journals = start_rollout(site, recipe, *args)
    try:
        path = follow(journals, when, proc)
        with fault(journal.read(path)[1]):
            out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return Ended(proc.returncode, out, err, path)
