"""An SSH transport that adds up how long its remote commands ran: the device's side of each step.

A step's wall time minus its remote time is edgeq's part of it (connections, file transfers,
host-side work, journaling); the rollout report and bench/rollout_scaling.py show that split.
"""

from __future__ import annotations

from time import monotonic

from edgeq.recipe import Host
from edgeq.remote.connection import open_connection
from edgeq.remote.timeouts import Timeouts
from edgeq.remote.transport import SSHTransport, Transport


class TimedSSHTransport(SSHTransport):
    """SSHTransport plus ``remote_seconds``: the summed wall time of the commands it ran."""

    def __init__(self, host: Host, conn, timeouts: Timeouts) -> None:  # noqa: ANN001 (fabric Connection)
        super().__init__(host, conn, timeouts)
        self.remote_seconds = 0.0

    @classmethod
    def open(cls, host: Host, timeouts: Timeouts | None = None) -> TimedSSHTransport:
        timeouts = timeouts or Timeouts()
        return cls(host, open_connection(host, timeouts), timeouts)

    def _run(self, argv: list[str], timeout: float) -> tuple[int, str, str]:
        started = monotonic()
        try:
            return super()._run(argv, timeout)
        finally:
            self.remote_seconds += monotonic() - started


def remote_seconds(transport: Transport) -> float:
    """Remote command time so far (0 for a transport that does not count it)."""
    return getattr(transport, "remote_seconds", 0.0)
