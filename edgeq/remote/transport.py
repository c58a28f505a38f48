"""Run commands and move files on a device: one protocol, over SSH or on this machine.

Commands are argument lists, never shell text: each one is joined with :func:`shlex.join` before
it reaches a remote shell, so no value is ever interpreted by it.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import select
import selectors
import shlex
import shutil
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from fabric import Connection
from paramiko import Channel, SFTPClient, SSHException
from paramiko import Transport as ParamikoTransport

from edgeq.atomic import open_atomic
from edgeq.device import progress as device_progress
from edgeq.errors import DeviceError, InputError
from edgeq.hosts import Host
from edgeq.remote.connection import open_connection
from edgeq.remote.failures import Endpoint, device_errors
from edgeq.remote.hostkeys import known_hosts_path
from edgeq.remote.timeouts import Timeouts

REMOTE_KILL_DELAY = 1.0  # seconds after a command's timeout at which the device kills it
OUTPUT_LIMIT = 64 * 1024 * 1024  # bytes of stdout one command may print (an agent answer); more is an error
STDERR_TAIL = 1024 * 1024  # bytes of stderr kept (the end: where the reason for a failure is)
PROGRESS_PREFIX = device_progress.PREFIX.encode()
_CHUNK = 1 << 16
_SFTP_CHUNK = 32768  # paramiko's own transfer size: one SFTP write request each


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:]) or "(no output)"


@dataclass(frozen=True)
class CommandResult:
    """How one command ended."""

    host: str
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> CommandResult:
        """This result, or a DeviceError if the command failed."""
        if not self.ok:
            command = _shown(shlex.join(self.argv))
            raise DeviceError(self.host, f"`{command}` exited with {self.exit_code}: {_tail(self.stderr or self.stdout)}")
        return self

    def json(self) -> Any:
        """The JSON value on the last non-empty line of stdout, or a DeviceError."""
        lines = self.stdout.strip().splitlines()
        try:
            return json.loads(lines[-1])
        except (IndexError, ValueError):
            command = _shown(shlex.join(self.argv))
            raise DeviceError(
                self.host, f"`{command}` printed no JSON (exit {self.exit_code}): {_tail(self.stderr or self.stdout)}"
            ) from None


class OutputTooLarge(Exception):
    """A command printed more than OUTPUT_LIMIT bytes on stdout."""


Progress = Callable[[int, int], None]  # (done, total) of a long agent command, as it runs


class _Output:
    """stdout and stderr of one command, read in linear time: all of stdout up to a limit, stderr's tail. The
    agent's progress lines (:mod:`edgeq.device.progress`) are taken out of stderr and handed to ``progress``."""

    def __init__(self, limit: int, progress: Progress | None = None) -> None:
        self.limit = limit
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._line = bytearray()  # stderr's last line, until it ends
        self._progress = progress

    def out(self, data: bytes) -> None:
        self.stdout += data
        if len(self.stdout) > self.limit:
            raise OutputTooLarge

    def err(self, data: bytes) -> None:
        self._line += data
        cut = self._line.rfind(b"\n") + 1
        ended, self._line = self._line[:cut], self._line[cut:]
        if PROGRESS_PREFIX not in ended:  # the common case, at memcpy speed
            self.stderr += ended
        else:
            for line in ended.split(b"\n")[:-1]:
                if not self._told(line):
                    self.stderr += line + b"\n"
        if len(self._line) > STDERR_TAIL:  # a line without end: it is text, not progress
            self.stderr += self._line
            self._line.clear()
        if len(self.stderr) > 2 * STDERR_TAIL:  # trimmed in bulk: amortised linear
            del self.stderr[: len(self.stderr) - STDERR_TAIL]

    def _told(self, line: bytes | bytearray) -> bool:
        """Whether ``line`` is a well-formed progress line (handed on, if anyone listens)."""
        words = line[len(PROGRESS_PREFIX):].split() if line.startswith(PROGRESS_PREFIX) else []
        if len(words) != 2 or not all(w.isdigit() for w in words) or int(words[0]) > int(words[1]):
            return False
        if self._progress is not None:
            self._progress(int(words[0]), int(words[1]))
        return True

    def decoded(self) -> tuple[str, str]:
        return self.stdout.decode(errors="replace"), (self.stderr + self._line)[-STDERR_TAIL:].decode(errors="replace")


def resolve_workdir(workdir: str, home: str, label: str) -> str:
    """``workdir`` as an absolute path on the device: ``~`` and relative paths start at ``home``."""
    if workdir.startswith("~") and workdir != "~" and not workdir.startswith("~/"):
        raise InputError(f"{label}: workdir {workdir!r}: use an absolute path or one starting with ~/")
    rest = workdir.removeprefix("~").lstrip("/") if workdir.startswith("~") else workdir
    return posixpath.normpath(posixpath.join(home, rest))


class Transport(ABC):
    """A device edgeq works on: run commands, put and get files, count the bytes moved."""

    def __init__(self, label: str, python: str, workdir: str, timeouts: Timeouts) -> None:
        self.label = label
        self.python = python
        self.timeouts = timeouts
        self.bytes_sent = 0
        self.bytes_received = 0
        self.remote_seconds = 0.0  # summed wall time of the commands run: the device's side of each step
        self.commands = 0  # commands run: round trips to the device
        self.output_limit = OUTPUT_LIMIT
        self.progress: Progress | None = None  # told how far a command got while it runs (agent progress lines)
        self._workdir_setting = workdir
        self._workdir: str | None = None

    @property
    def workdir(self) -> str:
        """The absolute device work folder (``~`` resolved once, on first use)."""
        if self._workdir is None:
            self._workdir = resolve_workdir(self._workdir_setting, self._home(), self.label)
        return self._workdir

    @property
    def workdir_setting(self) -> str:
        """The work folder as configured (may start with ``~``), checked for a form edgeq can resolve."""
        resolve_workdir(self._workdir_setting, "/", self.label)
        return self._workdir_setting

    def learn_home(self, home: str) -> None:
        """Resolve the work folder with a ``$HOME`` another command reported (saves a round trip)."""
        if self._workdir is None:
            if not home.startswith("/"):
                raise DeviceError(self.label, f"expected an absolute $HOME on the device, found {home!r}")
            self._workdir = resolve_workdir(self._workdir_setting, home, self.label)

    def path(self, *parts: str) -> str:
        """A path inside the work folder."""
        return posixpath.join(self.workdir, *parts)

    def run(self, argv: list[str], *, timeout: float | None = None) -> CommandResult:
        """Run ``argv`` (every element passed verbatim); the default timeout is ``timeouts.command``."""
        if not argv:
            raise ValueError("empty command")
        started = time.monotonic()
        try:
            exit_code, stdout, stderr = self._run(list(argv), timeout or self.timeouts.command)
        finally:
            self.remote_seconds += time.monotonic() - started
            self.commands += 1
        self.bytes_sent += len(shlex.join(argv).encode())
        self.bytes_received += len(stdout.encode()) + len(stderr.encode())
        return CommandResult(self.label, tuple(argv), exit_code, stdout, stderr, time.monotonic() - started)

    def put(self, local: Path, remote: str) -> int:
        """Copy the local file to ``remote`` (an absolute device path); returns the bytes sent."""
        local = Path(local)
        if not local.is_file():
            raise InputError(f"{local}: file to upload not found")
        self._put(local, remote)
        size = local.stat().st_size
        self.bytes_sent += size
        return size

    def get(self, remote: str, local: Path) -> int:
        """Copy ``remote`` to the local file, written atomically; returns the bytes received."""
        local = Path(local)
        self._get(remote, local)
        size = local.stat().st_size
        self.bytes_received += size
        return size

    @abstractmethod
    def _home(self) -> str: ...

    @abstractmethod
    def _run(self, argv: list[str], timeout: float) -> tuple[int, str, str]: ...

    @abstractmethod
    def _put(self, local: Path, remote: str) -> None: ...

    @abstractmethod
    def _get(self, remote: str, local: Path) -> None: ...

    @property
    def ssh(self) -> ParamikoTransport | None:
        """The live SSH transport underneath (None for a local transport or a closed connection)."""
        return None

    def close(self) -> None:  # noqa: B027 (a no-op by default: a local transport holds nothing to release)
        """Release the connection (nothing to do for a local transport)."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class SSHTransport(Transport):
    """A device over SSH (fabric), with strict host keys and bounded waits."""

    def __init__(self, host: Host, conn: Connection, timeouts: Timeouts) -> None:
        super().__init__(host.label, host.python, host.workdir, timeouts)
        self._conn = conn
        self._endpoint = Endpoint(
            host.label, conn.host, conn.port, conn.user, host.key, known_hosts_path(host.known_hosts)
        )

    @classmethod
    def open(cls, host: Host, timeouts: Timeouts | None = None) -> SSHTransport:
        """Connect to ``host`` (see :func:`~edgeq.remote.connection.open_connection`)."""
        timeouts = timeouts or Timeouts()
        return cls(host, open_connection(host, timeouts), timeouts)

    @property
    def ssh(self) -> ParamikoTransport | None:
        return self._conn.transport

    def _home(self) -> str:
        home = self.run(["printenv", "HOME"]).check().stdout.strip()
        if not home.startswith("/"):
            raise DeviceError(self.label, f"expected an absolute $HOME on the device, found {home!r}")
        return home

    def _run(self, argv: list[str], timeout: float) -> tuple[int, str, str]:
        action = f"running `{_shown(shlex.join(argv))}`"
        # Closing the channel at the timeout does not stop the remote process: coreutils `timeout`
        # on the device does, one second after this side has given up.
        command = shlex.join(["timeout", "-k", "5", f"{timeout + REMOTE_KILL_DELAY:g}", *argv])
        deadline = time.monotonic() + timeout
        output = _Output(self.output_limit, self.progress)
        with device_errors(self._endpoint, action, self.timeouts):
            ssh = self._conn.transport
            if ssh is None or not ssh.is_active():
                raise DeviceError(self.label, f"{action} failed: the SSH connection was lost")
            channel = ssh.open_session(timeout=self.timeouts.channel)
            try:
                channel.exec_command(command)
                exit_code = self._collect(channel, output, deadline, action, timeout)
            finally:
                channel.close()
        if exit_code == -1:
            raise DeviceError(
                self.label, f"{action} failed: the SSH connection was lost before the command reported its exit status"
            )
        return (exit_code, *output.decoded())

    def _collect(self, channel: Channel, output: _Output, deadline: float, action: str, timeout: float) -> int:
        """Read the channel's stdout and stderr until it ends (or the deadline); its exit status, -1 if lost."""

        def drain() -> None:
            while channel.recv_ready():
                output.out(channel.recv(_CHUNK))
            while channel.recv_stderr_ready():
                output.err(channel.recv_stderr(_CHUNK))

        try:
            while True:
                drain()
                if channel.eof_received or channel.closed:
                    drain()  # what arrived between the last read and the end
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeviceError(self.label, f"{action} failed: the command did not finish within {timeout:g} s")
                select.select([channel], [], [], min(remaining, 1.0))  # wakes on data, end of output, or a lost link
        except OutputTooLarge:
            raise DeviceError(
                self.label, f"{action} failed: it printed more than {self.output_limit // (1024 * 1024)} MiB; edgeq stopped reading"
            ) from None
        if not channel.status_event.wait(max(deadline - time.monotonic(), 0.0)):
            raise DeviceError(self.label, f"{action} failed: the command did not finish within {timeout:g} s")
        return channel.exit_status

    def _sftp(self) -> SFTPClient:
        sftp = self._conn.sftp()
        sftp.get_channel().settimeout(self.timeouts.channel)  # a silent peer fails a transfer, never hangs it
        return sftp

    def _put(self, local: Path, remote: str) -> None:
        """Upload into a file made private (0600) before any byte is written; the size is checked after."""
        with device_errors(self._endpoint, f"uploading {local.name} to {remote}", self.timeouts):
            sftp = self._sftp()
            with local.open("rb") as source, sftp.open(remote, "wb") as target:
                target.chmod(0o600)
                target.set_pipelined(True)
                shutil.copyfileobj(source, target, _SFTP_CHUNK)
            size = sftp.stat(remote).st_size
        if size != local.stat().st_size:
            raise DeviceError(self.label, f"uploading {local.name} to {remote} failed: {size} of {local.stat().st_size} bytes arrived")

    def _get(self, remote: str, local: Path) -> None:
        with device_errors(self._endpoint, f"downloading {remote}", self.timeouts), open_atomic(local) as handle:
            self._sftp().getfo(remote, handle)

    def close(self) -> None:
        """Close the SFTP session, then the connection. Where the device is gone, saying goodbye can fail (paramiko
        raises EOFError when it cannot send the close): the connection is closed either way, so that is not an
        error, and the client is closed even when the SFTP session's close raised (fabric would stop there)."""
        for step in (self._conn.close, self._conn.client.close):
            with contextlib.suppress(EOFError, OSError, SSHException):
                step()


class LocalTransport(Transport):
    """This machine as the device (``--target local``): subprocesses and file copies, same semantics."""

    def __init__(self, python: str, workdir: str = "~/.edgeq", timeouts: Timeouts | None = None) -> None:
        super().__init__("local", python, workdir, timeouts or Timeouts())

    def _home(self) -> str:
        return str(Path.home())

    def _run(self, argv: list[str], timeout: float) -> tuple[int, str, str]:
        action = f"running `{_shown(shlex.join(argv))}`"
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            return 127, "", f"{argv[0]}: command not found\n"
        stdout, stderr = process.stdout, process.stderr
        assert stdout is not None and stderr is not None  # both are pipes (PIPE above)
        output = _Output(self.output_limit, self.progress)
        deadline = time.monotonic() + timeout
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(stdout, selectors.EVENT_READ, output.out)
                selector.register(stderr, selectors.EVENT_READ, output.err)
                while selector.get_map():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise DeviceError(self.label, f"{action} failed: the command did not finish within {timeout:g} s")
                    for key, _ in selector.select(remaining):
                        data = os.read(key.fd, _CHUNK)
                        if data:
                            key.data(data)
                        else:
                            selector.unregister(key.fileobj)
            exit_code = process.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            process.kill()
            raise DeviceError(self.label, f"{action} failed: the command did not finish within {timeout:g} s") from None
        except OutputTooLarge:
            process.kill()
            raise DeviceError(
                self.label, f"{action} failed: it printed more than {self.output_limit // (1024 * 1024)} MiB; edgeq stopped reading"
            ) from None
        except BaseException:
            process.kill()
            raise
        finally:
            stdout.close()
            stderr.close()
            process.wait()
        return (exit_code, *output.decoded())

    def _copy(self, source: Path, target: Path, action: str) -> None:
        try:
            with source.open("rb") as reader, open_atomic(target) as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
        except OSError as exc:
            raise DeviceError(self.label, f"{action} failed: {exc.strerror or exc} ({exc.filename})") from None

    def _put(self, local: Path, remote: str) -> None:
        self._copy(local, Path(remote), f"copying {local.name} to {remote}")

    def _get(self, remote: str, local: Path) -> None:
        self._copy(Path(remote), local, f"copying {remote}")


def run_python(transport: Transport, source: str, args: list[str], *, timeout: float | None = None) -> Any:
    """Run ``source`` with the device's Python (``python -c``) and return the JSON it prints last."""
    return transport.run([transport.python, "-c", source, *args], timeout=timeout).check().json()

