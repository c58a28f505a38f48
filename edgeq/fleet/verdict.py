"""Whether a wave passed: no device failed a gate, and device failures stayed within the wave's budget."""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.deploy.steps import DeviceState, Phase
from edgeq.errors import ExitCode
from edgeq.strenum import StrEnum


class Outcome(StrEnum):
    """How a rollout ended, with its exit code."""

    COMPLETED = "completed"
    GATE_FAILED = "gate_failed"  # a wave failed a gate: the rollout stopped there
    DEVICES_FAILED = "devices_failed"  # a wave had more device failures than its budget

    @property
    def exit_code(self) -> ExitCode:
        return {Outcome.COMPLETED: ExitCode.OK, Outcome.GATE_FAILED: ExitCode.GATE_FAILED,
                Outcome.DEVICES_FAILED: ExitCode.DEVICE}[self]


@dataclass(frozen=True)
class WaveVerdict:
    passed: bool
    outcome: Outcome  # COMPLETED when passed, else why the rollout stops
    reason: str
    failed: int
    allowed: int


def judge(devices: list[DeviceState], allowed: int) -> WaveVerdict:
    """The verdict on a wave's devices: any gate failure stops the rollout; so do more device failures than ``allowed``."""
    gate = [d for d in devices if d.phase == Phase.GATE_FAILED]
    failed = [d for d in devices if d.phase == Phase.FAILED]
    if gate:
        detail = "; ".join(f"{d.name}: {d.error}" for d in gate)
        return WaveVerdict(False, Outcome.GATE_FAILED, f"gate failed on {len(gate)} device(s): {detail}", len(failed), allowed)
    if len(failed) > allowed:
        names = ", ".join(d.name for d in failed)
        reason = f"{len(failed)} of {len(devices)} devices failed ({names}); the budget allows {allowed}"
        return WaveVerdict(False, Outcome.DEVICES_FAILED, reason, len(failed), allowed)
    note = f"; {len(failed)} device(s) failed within the budget of {allowed}" if failed else ""
    reason = f"{len(devices) - len(failed)} of {len(devices)} devices on the new engine{note}"
    return WaveVerdict(True, Outcome.COMPLETED, reason, len(failed), allowed)
