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
from dataclasses import dataclass, field
from types import TracebackType
from typing import Generic, TypeVar

from edgeq.errors import DeviceError, EdgeqError
from edgeq.hosts import Host
from edgeq.remote.timeouts import Timeouts
from edgeq.remote.transport import SSHTransport, Transport

T = TypeVar("T")
Opener = Callable[[Host, Timeouts], Transport]
REACH_CONCURRENCY = 16  # connections opened at once by :func:`reach`


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


@dataclass
class Reached:
    """Devices connected to before any long work (address resolved, SSH up, host key verified, logged in): the
    open transports by host label, and the error of each host that could not be reached."""

    transports: dict[str, Transport] = field(default_factory=dict)
    errors: dict[str, EdgeqError] = field(default_factory=dict)

    def opener(self, fallback: Opener = SSHTransport.open) -> Opener:
        """An :data:`Opener` that hands each reached host its transport once (``fallback`` opens a new one where it
        was lost meanwhile, or for a host not reached here); a host that could not be reached fails with its error."""

        def open_reached(host: Host, timeouts: Timeouts) -> Transport:
            error = self.errors.get(host.label)
            if error is not None:
                raise error
            transport = self.transports.pop(host.label, None)
            if transport is not None and transport.ssh is not None and transport.ssh.is_active():
                return transport
            if transport is not None:
                transport.close()
            return fallback(host, timeouts)

        return open_reached

    def close(self) -> None:
        """Close the transports not handed out."""
        for transport in self.transports.values():
            transport.close()
        self.transports.clear()

    def __enter__(self) -> Reached:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def reach(hosts: Sequence[Host], *, timeouts: Timeouts | None = None, keep: bool = True,
          opener: Opener = SSHTransport.open) -> Reached:
    """Connect to every host, :data:`REACH_CONCURRENCY` at once, so a wrong address, a closed port, a refused host
    key or a failed login shows in seconds, before any long work. ``keep``: keep the connections open for the
    work (else close them: only reachability is learned). Raises a DeviceError when no host can be reached."""
    timeouts = timeouts or Timeouts()
    reached = Reached()

    def connect(host: Host) -> None:
        try:
            transport = opener(host, timeouts)
        except EdgeqError as exc:
            reached.errors[host.label] = exc
            return
        if keep:
            reached.transports[host.label] = transport
        else:
            transport.close()

    if not hosts:
        return reached
    try:
        with ThreadPoolExecutor(max_workers=min(REACH_CONCURRENCY, len(hosts)), thread_name_prefix="edgeq-reach") as pool:
            list(pool.map(connect, hosts))
    except BaseException:
        reached.close()
        raise
    if len(reached.errors) == len(hosts):
        errors = list(reached.errors.values())
        if len(errors) == 1:
            raise errors[0]
        raise DeviceError("devices", "none could be reached:\n" + "\n".join(f"  - {e.message}" for e in errors))
    return reached
