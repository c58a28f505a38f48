"""Run one task per host concurrently, collecting each host's result or error.

A thread pool over one transport per host, rather than fabric's ThreadingGroup: a task here is a
whole multi-step job (push, build, measure) and one host's failure must not end the others. Every
wait inside a task is bounded by :class:`~edgeq.remote.timeouts.Timeouts`, so a dead or hung host
holds one worker for at most its timeouts while the other hosts go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from edgeq.errors import EdgeqError
from edgeq.hosts import Host
from edgeq.remote.timeouts import Timeouts
from edgeq.remote.transport import SSHTransport, Transport

T = TypeVar("T")
Opener = Callable[[Host, Timeouts], Transport]


@dataclass(frozen=True)
class HostOutcome(Generic[T]):
    """One host's result, or the error that ended its task."""

    host: Host
    value: T | None
    error: EdgeqError | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


def on_hosts(
    hosts: Sequence[Host],
    task: Callable[[Transport], T],
    *,
    limit: int = 8,
    timeouts: Timeouts | None = None,
    opener: Opener = SSHTransport.open,
) -> list[HostOutcome[T]]:
    """Connect to each host and run ``task`` on it, at most ``limit`` at once; outcomes in host order.

    EdgeqErrors (unreachable host, failed command, failed gate) become that host's outcome; any
    other exception is a bug and propagates once every host has finished.
    """
    timeouts = timeouts or Timeouts()

    def one(host: Host) -> HostOutcome[T]:
        started = time.monotonic()
        try:
            with opener(host, timeouts) as transport:
                value = task(transport)
        except EdgeqError as exc:
            return HostOutcome(host, None, exc, time.monotonic() - started)
        return HostOutcome(host, value, None, time.monotonic() - started)

    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(limit, len(hosts))), thread_name_prefix="edgeq-host") as pool:
        return list(pool.map(one, hosts))
