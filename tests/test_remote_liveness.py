"""The keepalive watchdog on a real loopback SSH device: a frozen device is cut loose, a busy one is not."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeq.errors import DeviceError
from edgeq.remote.liveness import Liveness
from edgeq.remote.timeouts import Timeouts
from edgeq.remote.transport import SSHTransport
from tests.devices.fleet import Device, Fleet

pytestmark = pytest.mark.ssh

PATIENCE = 1.0


def test_a_frozen_device_fails_its_running_command_within_the_patience(ssh_fleet: Callable[[int], Fleet]) -> None:
    device = ssh_fleet(1)[0]
    transport = SSHTransport.open(device.host, Timeouts(connect=5, channel=5, command=120))
    started = threading.Event()
    outcome: list[object] = []

    def long_command() -> None:
        started.set()
        try:
            outcome.append(transport.run(["sleep", "60"]))
        except DeviceError as exc:
            outcome.append(exc)

    try:
        with Liveness(transport, PATIENCE) as liveness:
            worker = threading.Thread(target=long_command)
            worker.start()
            started.wait()
            while not _sleeping(device):  # wait until the command runs on the device
                time.sleep(0.01)
            frozen_at = time.monotonic()
            device.pause()
            worker.join(30)
            elapsed = time.monotonic() - frozen_at
    finally:
        device.resume()
        transport.close()
    assert not worker.is_alive()
    assert liveness.fired
    assert isinstance(outcome[0], DeviceError), outcome
    assert elapsed < PATIENCE + liveness.interval + 3
    assert transport.remote_seconds > 0


def test_a_busy_device_that_answers_is_left_alone(ssh_fleet: Callable[[int], Fleet]) -> None:
    device = ssh_fleet(1)[0]
    transport = SSHTransport.open(device.host)
    try:
        with Liveness(transport, PATIENCE) as liveness:
            result = transport.run(["sleep", "3"])  # three times the patience, answering keepalives all along
    finally:
        transport.close()
    assert result.ok and not liveness.fired
    assert transport.remote_seconds >= 3


def _sleeping(device: Device) -> bool:
    """Whether the device's `sleep 60` process exists yet."""
    from tests.devices.fleet import _descendants

    pid = device.listener_pid()
    if pid is None:
        return False
    for child in _descendants(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as handle:
                if handle.read().split(b"\0")[:2] == [b"sleep", b"60"]:
                    return True
        except OSError:
            continue
    return False


def test_closing_a_connection_whose_device_cannot_hear_the_goodbye_does_not_raise(
    ssh_fleet: Callable[[int], Fleet], tmp_path: Path
) -> None:
    """The device freezes and this side's socket can no longer send, while paramiko's reader still holds the
    connection active: closing the SFTP session cannot send its message (paramiko raises EOFError). The close must
    still succeed and end the connection. A deploy that lost its device this way exited 130, "interrupted": the
    EOFError left the transport's close and reached click, which turns it into an abort."""
    device = ssh_fleet(1)[0]
    transport = SSHTransport.open(device.host, Timeouts(connect=5, channel=5, command=30))
    transport.get("/etc/hostname", tmp_path / "hostname")  # an SFTP session is open, to be closed with the connection
    ssh = transport.ssh
    assert ssh is not None and ssh.sock is not None
    with device.paused():
        ssh.sock.shutdown(socket.SHUT_WR)
        transport.close()
        assert not ssh.is_active()
