"""How long edgeq waits on a device, at most."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """Every wait on a device is bounded; seconds.

    ``connect`` bounds the TCP connect, the SSH banner, the handshake and authentication, each.
    ``channel`` bounds opening a channel (a command, SFTP) and any silence during a file transfer:
    without it a connection whose peer vanished hangs forever. ``command`` is the default limit of
    one command.
    """

    connect: float = 10.0
    channel: float = 20.0
    command: float = 600.0
