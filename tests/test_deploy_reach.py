"""Devices are reached before any long work: `deploy` and `rollout` resolve, connect and check host keys first, so
an unreachable device fails in seconds, before anything is calibrated."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fabric import Connection

from edgeq.hosts import Host
from edgeq.remote import transport
from edgeq.remote.connection import open_connection
from edgeq.remote.timeouts import Timeouts
from tests.calibrate_nets import fire_net, write_recipe
from tests.cli import run_edgeq
from tests.devices.fleet import Device

CLOSED = "user@127.0.0.1:1"  # nothing listens on port 1: the connection is refused at once


def _recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "r", fire_net())


def test_deploy_to_a_closed_port_exits_3_in_seconds_before_calibrating(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    started = time.perf_counter()
    result = run_edgeq("deploy", recipe, "--target", "jetson-orin", "--host", CLOSED)
    seconds = time.perf_counter() - started
    assert result.code == 3, result.stderr
    assert "127.0.0.1:1" in result.stderr and "connection refused" in result.stderr
    assert seconds < 10, seconds
    assert not (recipe.parent / "edgeq-out").exists()  # nothing calibrated, nothing written


def test_deploy_to_several_closed_ports_names_each(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    result = run_edgeq("deploy", recipe, "--target", "local", "--host", CLOSED, "--host", "user@127.0.0.1:2", "--json")
    assert result.code == 3 and result.stdout == ""
    assert "none could be reached" in result.stderr and "127.0.0.1:1" in result.stderr and "127.0.0.1:2" in result.stderr
    assert not (recipe.parent / "edgeq-out").exists()


def test_rollout_to_a_closed_port_exits_3_before_calibrating(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    started = time.perf_counter()
    result = run_edgeq("rollout", recipe, "--host", CLOSED, "--target", "local")
    assert result.code == 3 and "connection refused" in result.stderr, result.stderr
    assert time.perf_counter() - started < 10
    assert not (recipe.parent / "edgeq-out").exists()  # no calibration, no journal


def _host_args(device: Device) -> list[str]:
    host = device.host
    return ["--key", str(host.key), "--known-hosts", str(host.known_hosts), "--python", host.python]


@pytest.mark.ssh
def test_an_unknown_host_key_is_refused_before_calibrating(ssh_fleet, tmp_path: Path) -> None:
    (device,) = ssh_fleet(1)
    recipe = _recipe(tmp_path)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = device.host
    result = run_edgeq("deploy", recipe, "--target", "local", "--host", f"{host.user}@{host.address}",
                       "--key", host.key, "--known-hosts", empty, "--python", host.python)
    assert result.code == 3 and "host key" in result.stderr, result.stderr
    assert not (recipe.parent / "edgeq-out").exists()


@pytest.mark.ssh
@pytest.mark.slow
def test_the_reachable_devices_deploy_over_the_connection_opened_first(
    ssh_fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (device,) = ssh_fleet(1)
    recipe = _recipe(tmp_path)
    host = device.host
    opened: list[str] = []

    def counted(host: Host, timeouts: Timeouts) -> Connection:  # the real connection, counted
        opened.append(host.label)
        return open_connection(host, timeouts)

    monkeypatch.setattr(transport, "open_connection", counted)
    result = run_edgeq("deploy", recipe, "--target", "local", "--host", f"{host.user}@{host.address}", "--host", CLOSED,
                       *_host_args(device), "--json")
    assert result.code == 3  # the closed port is a device failure ...
    (report,) = json.loads(result.stdout)  # ... and the reachable device was deployed all the same
    assert report["host"] == f"{host.user}@{host.address}" and report["activated"] and report["passed"]
    assert result.stderr.count(f"{CLOSED}: connecting failed") == 2  # named before calibrating, and in the summary
    assert "the other devices go on" in result.stderr
    assert opened == [report["host"], CLOSED]  # one connection each, opened before calibrating; it did the work
