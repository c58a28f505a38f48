"""Shared fixtures: the loopback SSH device fleet (see tests/devices/fleet.py), a transport to one device or this machine."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeq.remote import LocalTransport, SSHTransport, Timeouts, Transport
from tests.devices.fleet import Fleet, missing_prerequisites, start_fleet


def _require_fleet() -> None:
    reason = missing_prerequisites()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def ssh_fleet() -> Iterator[Callable[[int], Fleet]]:
    """Factory: ``ssh_fleet(n)`` starts n loopback SSH devices, all stopped when the test ends."""
    _require_fleet()
    fleets: list[Fleet] = []

    def make(count: int = 1) -> Fleet:
        fleets.append(start_fleet(count))
        return fleets[-1]

    yield make
    for fleet in fleets:
        fleet.close()


@pytest.fixture(scope="module")
def shared_fleet() -> Iterator[Fleet]:
    """Two devices shared by a module's tests; only for tests that leave the devices running and reachable."""
    _require_fleet()
    fleet = start_fleet(2)
    yield fleet
    fleet.close()


@pytest.fixture(params=["exact", "saturating"])
def int8_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each INT8 arithmetic path, forced with EDGEQ_INT8_ARITH (edgeq.device.int8_arith).

    The saturating-safe formulations run on every CPU. The exact path runs where this CPU's u8 x s8 kernels
    are exact: forced on a CPU that saturates, its numbers clip, as the override says they will.
    """
    from edgeq.device.int8_arith import ENV, measure

    if request.param == "exact" and measure().measured != "exact":
        pytest.skip("this CPU's u8 x s8 kernels saturate (probe): the exact path cannot be exact here")
    monkeypatch.setenv(ENV, request.param)
    return request.param


TRANSPORT_TIMEOUTS = Timeouts(connect=2.0, channel=2.0, command=20.0)


@pytest.fixture(params=[pytest.param("ssh", marks=pytest.mark.ssh), "local"])
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Transport]:
    """The same tests against a loopback SSH device and against this machine (its work folder made)."""
    if request.param == "ssh":
        device = request.getfixturevalue("shared_fleet")[0]
        opened: Transport = SSHTransport.open(device.host, TRANSPORT_TIMEOUTS)
    else:
        opened = LocalTransport(sys.executable, str(tmp_path / "work"), TRANSPORT_TIMEOUTS)
    with opened:
        opened.run(["mkdir", "-p", opened.workdir]).check()
        yield opened
