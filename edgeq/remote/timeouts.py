"""How long edgeq waits on a device, at most."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """Every wait on a device is bounded; seconds.

    ``connect`` bounds the TCP connect, the SSH banner, the handshake and authentication, each.
    ``channel`` bounds opening a channel (a command, SFTP) and any silence during a file transfer:
    without it a connection whose peer vanished hangs forever. ``command`` is the default limit of
    one command. ``keepalive`` is the interval of SSH keepalive messages on every connection (they
    keep NAT and firewall state alive during long silent steps); a peer that acknowledges nothing
    for ``dead_peer`` seconds (powered off, unplugged, dropped by a firewall) has its connection
    closed by the kernel (TCP_USER_TIMEOUT), so whatever waits on it fails instead of hanging.
    """

    connect: float = 10.0
    channel: float = 20.0
    command: float = 600.0
    keepalive: float = 15.0
    dead_peer: float = 60.0
