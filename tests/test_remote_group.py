"""One task per host, concurrently: a dead or hung host costs only itself."""

from __future__ import annotations

import time

import pytest

from edgeq.errors import DeviceError
from edgeq.remote import Timeouts, Transport, on_hosts

pytestmark = pytest.mark.ssh
FAST = Timeouts(connect=2.0, channel=2.0, command=10.0)


def home_of(transport: Transport) -> str:
    return transport.run(["printenv", "HOME"]).check().stdout.strip()


def test_dead_and_hung_hosts_fail_alone_while_the_others_succeed(ssh_fleet):
    fleet = ssh_fleet(4)
    dead, hung = fleet[1], fleet[2]
    dead.stop()
    hung.pause()

    started = time.monotonic()
    outcomes = on_hosts(fleet.hosts, home_of, limit=4, timeouts=FAST)
    elapsed = time.monotonic() - started

    assert [o.host for o in outcomes] == fleet.hosts  # host order kept
    for device, outcome in zip(fleet, outcomes, strict=True):
        if device in (dead, hung):
            assert isinstance(outcome.error, DeviceError) and outcome.value is None
            assert outcome.error.host == device.host.label
        else:
            assert outcome.ok and outcome.value == str(device.home)
            assert outcome.seconds < 1.0  # not held up by the hung host
    assert "connection refused" in outcomes[1].error.message
    assert elapsed < 2 * FAST.connect + 1.5  # the hung host's handshake timeout, not a hang


def test_a_failing_task_is_that_host_s_outcome(ssh_fleet):
    fleet = ssh_fleet(2)

    def fails_on_second(transport: Transport) -> int:
        if transport.label == fleet[1].host.label:
            transport.run(["false"]).check()
        return 7

    first, second = on_hosts(fleet.hosts, fails_on_second, limit=1, timeouts=FAST)
    assert first.ok and first.value == 7
    assert "`false` exited with 1" in second.error.message
