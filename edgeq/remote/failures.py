"""Turn SSH, socket and fabric exceptions into one DeviceError that names the host and says, in words, what happened."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import CommandTimedOut, ThreadException
from paramiko import AuthenticationException, BadHostKeyException, PasswordRequiredException, SSHException
from paramiko.ssh_exception import NoValidConnectionsError

from edgeq.errors import DeviceError, EdgeqError
from edgeq.remote.hostkeys import UnknownHostKey, changed_key_message, unknown_key_message
from edgeq.remote.timeouts import Timeouts

CONNECTING = "connecting"


@dataclass(frozen=True)
class Endpoint:
    """Where a connection goes, after ~/.ssh/config was applied; ``label`` is the Host as the user wrote it."""

    label: str
    address: str
    port: int
    user: str
    key: Path | None
    known_hosts: Path


def _refused_only(exc: NoValidConnectionsError) -> bool:
    return all(getattr(e, "errno", None) == errno.ECONNREFUSED for e in exc.errors.values())


def describe(exc: BaseException, at: Endpoint, action: str, timeouts: Timeouts) -> str:
    """One sentence about ``exc``, raised while ``action`` on ``at``."""
    where = f"{at.address}:{at.port}"
    connecting = action == CONNECTING
    if isinstance(exc, ThreadException) and exc.exceptions:  # fabric's I/O threads failed
        return describe(exc.exceptions[0].value, at, action, timeouts)
    if isinstance(exc, UnknownHostKey):
        return unknown_key_message(exc, at.address, at.port, at.known_hosts)
    if isinstance(exc, BadHostKeyException):
        return changed_key_message(at.address, at.port, exc.key, exc.expected_key, at.known_hosts)
    if isinstance(exc, PasswordRequiredException):
        return f"the private key {at.key} is encrypted: load it into ssh-agent (ssh-add) and try again"
    if isinstance(exc, AuthenticationException):
        keys = f"key {at.key}" if at.key else "the keys from ssh-agent and ~/.ssh"
        return (
            f"authentication as {at.user} failed with {keys}: check the user name and that the public key "
            "is in the device's ~/.ssh/authorized_keys"
        )
    if (isinstance(exc, NoValidConnectionsError) and _refused_only(exc)) or isinstance(exc, ConnectionRefusedError):
        return f"connection refused at {where}: no SSH server listens there (is the device up and sshd running?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name {at.address!r} ({exc.strerror})"
    if isinstance(exc, CommandTimedOut):
        return f"the command did not finish within {exc.timeout:g} s"
    if isinstance(exc, TimeoutError):
        if connecting:
            return (
                f"no answer from {where} within {timeouts.connect:g} s (connect timeout): "
                "the device is off, unreachable, or a firewall drops the traffic"
            )
        return f"the device stopped answering: nothing received for {timeouts.channel:g} s"
    if isinstance(exc, SSHException):
        text = str(exc)
        if "protocol banner" in text:
            return f"{where} accepted the connection but sent no SSH banner within {timeouts.connect:g} s"
        timed_out = "timeout" in text.lower() or "timed out" in text.lower()
        if "No existing session" in text or (timed_out and connecting):
            return (
                f"{where} accepted the TCP connection but the SSH handshake did not complete within "
                f"{timeouts.connect:g} s: the SSH server is hung or overloaded"
            )
        if "Timeout opening channel" in text:
            return f"the device stopped answering: no channel could be opened within {timeouts.channel:g} s"
        if "not active" in text or "closed" in text.lower():
            return "the SSH connection was lost"
        return f"SSH error: {text}"
    if isinstance(exc, (EOFError, ConnectionError)):
        return f"the SSH connection was lost ({exc.__class__.__name__})"
    if isinstance(exc, OSError):
        target = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{target}"
    return f"{exc.__class__.__name__}: {exc}"


@contextmanager
def device_errors(at: Endpoint, action: str, timeouts: Timeouts) -> Iterator[None]:
    """Re-raise connection and remote-operation failures inside the block as a DeviceError."""
    try:
        yield
    except EdgeqError:
        raise
    except (SSHException, OSError, EOFError, CommandTimedOut, ThreadException) as exc:
        raise DeviceError(at.label, f"{action} failed: {describe(exc, at, action, timeouts)}") from exc
