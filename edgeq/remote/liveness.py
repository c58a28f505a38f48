"""Notice a device that stops answering in the middle of a long command, and cut it loose.

A build may rightly run for an hour, so a command's own timeout cannot tell a busy device from a
frozen one. While a device task runs, :class:`Liveness` sends an SSH keepalive request every
``interval`` seconds; sshd answers it at once however busy the device is. When no answer comes
within ``patience`` seconds the connection is closed, so the blocked command fails at once instead
of holding its worker until its own timeout.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from paramiko import Transport as ParamikoTransport

from edgeq.remote.transport import Transport


class Liveness:
    """A keepalive watchdog over one transport, for the duration of a ``with`` block."""

    def __init__(self, transport: Transport, patience: float) -> None:
        self.transport = transport
        self.patience = patience
        self.interval = max(patience / 3, 0.5)
        self.fired = False
        self._answered = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"edgeq-liveness-{transport.label}", daemon=True)

    def __enter__(self) -> Liveness:
        if self.transport.ssh is not None:
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()

    def last_answer(self) -> float:
        """time.monotonic() of the device's last sign of life: the last answered keepalive (now, when there is
        no SSH connection to watch)."""
        return time.monotonic() if self.transport.ssh is None else self._answered

    def describe(self) -> str:
        return f"the device stopped answering: no reply to SSH keepalives within {self.patience:g} s"

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            ssh = self.transport.ssh
            if ssh is None or not ssh.is_active():
                return
            if self._answers(ssh):
                self._answered = time.monotonic()
            elif not self._stop.is_set():
                self.fired = True
                self.transport.close()  # the blocked command sees the connection end
                return

    def _answers(self, ssh: ParamikoTransport) -> bool:
        answered = threading.Event()

        def ask() -> None:
            try:
                ssh.global_request("keepalive@openssh.com", wait=True)  # OpenSSH replies (with a failure)
            except Exception:  # noqa: BLE001 (a dead transport is "no answer")
                return
            answered.set()

        threading.Thread(target=ask, daemon=True).start()
        return answered.wait(self.patience)
