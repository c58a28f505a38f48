"""Open a fabric Connection to a Host: strict host keys, ssh_config aliases, ssh-agent, bounded waits."""

from __future__ import annotations

import socket
from pathlib import Path

from fabric import Config, Connection

from edgeq.hosts import Host
from edgeq.remote.failures import Endpoint, device_errors
from edgeq.remote.hostkeys import apply_strict_policy, known_hosts_path
from edgeq.remote.timeouts import Timeouts


def _config() -> Config:
    """Fabric config: ~/.ssh/config and /etc/ssh/ssh_config loaded; runs never read our stdin."""
    return Config(overrides={"run": {"in_stream": False, "hide": True, "warn": True}})


def open_connection(host: Host, timeouts: Timeouts) -> Connection:
    """An open, authenticated Connection to ``host``, or a DeviceError that says what went wrong.

    ``host.address`` may be an alias from ~/.ssh/config (its HostName, Port, User, IdentityFile
    apply unless the Host sets them); keys from ssh-agent and ~/.ssh are tried as ssh does.
    """
    connect_kwargs: dict[str, object] = {
        "banner_timeout": timeouts.connect,
        "auth_timeout": timeouts.connect,
        "channel_timeout": timeouts.channel,
    }
    if host.key is not None:
        connect_kwargs["key_filename"] = str(Path(host.key).expanduser())
    conn = Connection(
        host.address,
        user=host.user,
        port=host.port if host.port != 22 else None,
        config=_config(),
        connect_timeout=timeouts.connect,
        connect_kwargs=connect_kwargs,
    )
    known_hosts = known_hosts_path(host.known_hosts)
    apply_strict_policy(conn.client, known_hosts)
    endpoint = Endpoint(host.label, conn.host, conn.port, conn.user, host.key, known_hosts)
    try:
        with device_errors(endpoint, "connecting", timeouts):
            conn.open()
            keep_alive(conn, timeouts)
    except BaseException:
        conn.close()
        raise
    return conn


def keep_alive(conn: Connection, timeouts: Timeouts) -> None:
    """SSH keepalives every ``timeouts.keepalive`` s; the kernel drops the connection after ``timeouts.dead_peer`` s
    of unacknowledged data (Linux TCP_USER_TIMEOUT; where the socket is a ProxyCommand, keepalives only)."""
    conn.transport.set_keepalive(timeouts.keepalive)
    sock = conn.transport.sock
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(timeouts.dead_peer * 1000)))
