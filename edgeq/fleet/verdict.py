"""Whether a wave passed: no device failed a gate, and device failures stayed within the wave's budget."""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.errors import ExitCode
from edgeq.fleet.state import FAILED, GATE_FAILED, DeviceState

# RolloutState.outcome values, with their exit codes
COMPLETED = "completed"
GATE_STOPPED = "gate_failed"
DEVICES_FAILED = "devices_failed"
EXIT_CODES = {COMPLETED: ExitCode.OK, GATE_STOPPED: ExitCode.GATE_FAILED, DEVICES_FAILED: ExitCode.DEVICE}


@dataclass(frozen=True)
class WaveVerdict:
    passed: bool
    outcome: str  # COMPLETED when passed, else why the rollout stops
    reason: str
    failed: int
    allowed: int


def judge(devices: list[DeviceState], allowed: int) -> WaveVerdict:
    """The verdict on a wave's devices: any gate failure stops the rollout; so do more device failures than ``allowed``."""
    gate = [d for d in devices if d.phase == GATE_FAILED]
    failed = [d for d in devices if d.phase == FAILED]
    if gate:
        detail = "; ".join(f"{d.name}: {d.error}" for d in gate)
        return WaveVerdict(False, GATE_STOPPED, f"gate failed on {len(gate)} device(s): {detail}", len(failed), allowed)
    if len(failed) > allowed:
        names = ", ".join(d.name for d in failed)
        reason = f"{len(failed)} of {len(devices)} devices failed ({names}); the budget allows {allowed}"
        return WaveVerdict(False, DEVICES_FAILED, reason, len(failed), allowed)
    note = f"; {len(failed)} device(s) failed within the budget of {allowed}" if failed else ""
    reason = f"{len(devices) - len(failed)} of {len(devices)} devices on the new engine{note}"
    return WaveVerdict(True, COMPLETED, reason, len(failed), allowed)
