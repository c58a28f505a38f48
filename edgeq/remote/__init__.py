"""The host side of SSH: strict connections, a transport (SSH or local), content-addressed sync, host groups.

Modules: ``timeouts`` (every wait bounded), ``hostkeys`` (known_hosts only, never auto-add),
``failures`` (exceptions -> DeviceError in words), ``connection`` (fabric Connection for a Host),
``transport`` (run/put/get over SSH or locally), ``sync`` (W/blobs/<sha256>), ``agent`` (ship and
invoke the device agent), ``group`` (one task per host, concurrently).
"""

from edgeq.remote.agent import AgentInvocation, push_agent, run_agent
from edgeq.remote.group import HostOutcome, on_hosts
from edgeq.remote.sync import SyncResult, push_blobs
from edgeq.remote.timeouts import Timeouts
from edgeq.remote.transport import CommandResult, LocalTransport, SSHTransport, Transport

__all__ = [
    "AgentInvocation",
    "CommandResult",
    "HostOutcome",
    "LocalTransport",
    "SSHTransport",
    "SyncResult",
    "Timeouts",
    "Transport",
    "on_hosts",
    "push_agent",
    "push_blobs",
    "run_agent",
]
