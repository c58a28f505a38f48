"""Ship the device agent (the .py files of ``edgeq.device``) and invoke it.

The agent goes over as one deterministic tar blob keyed by its content hash and is unpacked once
into ``W/agent/<hash>/<module>/``; a device that already has that version costs one command.
The agent prints one JSON object; on failure ``{"error": message, "kind": kind}`` and a non-zero exit.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import edgeq.device
from edgeq.errors import DeviceError
from edgeq.remote.sync import BLOBS, DEVICE_SCRIPT, push_blobs
from edgeq.remote.transport import Transport, run_python

AGENT_MODULE = "edgeq_device"
DEVICE_PACKAGE = Path(edgeq.device.__file__).parent

@dataclass(frozen=True)
class AgentInvocation:
    """How to start the pushed agent on the device."""

    python: str
    pythonpath: str
    module: str
    digest: str

    def argv(self, sub_command: str, args: list[str]) -> list[str]:
        """The command line of one agent call."""
        return ["env", f"PYTHONPATH={self.pythonpath}", self.python, "-m", self.module, sub_command, *args]


def pack_agent(package: Path = DEVICE_PACKAGE, module: str = AGENT_MODULE) -> bytes:
    """The package's .py files as a tar whose bytes depend only on their paths and contents."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for source in sorted(package.rglob("*.py")):
            if "__pycache__" in source.parts:
                continue
            data = source.read_bytes()
            info = tarfile.TarInfo(f"{module}/{source.relative_to(package).as_posix()}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@contextmanager
def agent_file(package: Path = DEVICE_PACKAGE, module: str = AGENT_MODULE) -> Iterator[Path]:
    """The packed agent as a temporary tar file, to push as a blob."""
    with tempfile.TemporaryDirectory(prefix="edgeq-agent-") as folder:
        tar = Path(folder) / f"{module}.tar"
        tar.write_bytes(pack_agent(package, module))
        yield tar


class AgentMissing(DeviceError):
    """This version of the agent is not unpacked on the device (yet)."""


def expected_agent(transport: Transport, package: Path = DEVICE_PACKAGE, module: str = AGENT_MODULE) -> AgentInvocation:
    """How this version of the agent runs once pushed: no remote call (use it, then push on AgentMissing)."""
    digest = hashlib.sha256(pack_agent(package, module)).hexdigest()
    return AgentInvocation(transport.python, transport.path("agent", digest), module, digest)


def push_agent(transport: Transport, package: Path = DEVICE_PACKAGE, module: str = AGENT_MODULE) -> AgentInvocation:
    """Make this version of the agent runnable on the device; cheap when it is already there."""
    packed = pack_agent(package, module)
    digest = hashlib.sha256(packed).hexdigest()
    unpack_args = ["unpack", transport.workdir, digest, module]
    if run_python(transport, DEVICE_SCRIPT, unpack_args) == "missing":
        with agent_file(package, module) as tar:
            push_blobs(transport, [tar])
        if run_python(transport, DEVICE_SCRIPT, unpack_args) == "missing":
            raise DeviceError(transport.label, f"the agent blob {BLOBS}/{digest} vanished before it was unpacked")
    return AgentInvocation(transport.python, transport.path("agent", digest), module, digest)


def run_agent(
    transport: Transport,
    agent: AgentInvocation,
    sub_command: str,
    args: list[str] | None = None,
    *,
    pass_workdir: bool = True,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run one agent sub-command and return its JSON object, or raise DeviceError with the agent's message.

    ``--workdir W`` (the transport's work folder) comes first in the arguments unless ``pass_workdir``
    is false (``probe`` takes none).
    """
    workdir = ["--workdir", transport.workdir] if pass_workdir else []
    result = transport.run(agent.argv(sub_command, [*workdir, *(args or [])]), timeout=timeout)
    if not result.ok and f"No module named {agent.module}" in result.stderr:
        raise AgentMissing(transport.label, f"the edgeq agent {agent.digest[:12]} is not on the device")
    if not result.ok:
        try:
            reply = result.json()
        except DeviceError:
            reply = None
        if isinstance(reply, dict) and "error" in reply:
            kind = f" [{reply['kind']}]" if reply.get("kind") else ""
            raise DeviceError(transport.label, f"agent `{sub_command}` failed{kind}: {reply['error']}")
        result.check()
    reply = result.json()
    if not isinstance(reply, dict):
        raise DeviceError(transport.label, f"agent `{sub_command}` printed {type(reply).__name__}, expected a JSON object")
    return reply
