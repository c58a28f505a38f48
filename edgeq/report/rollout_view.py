"""Rich renderables for rollouts: the plan, the live per-device view, the summary, and fleet status."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from edgeq.deploy.steps import Phase, Probed, Step, StepStatus
from edgeq.fleet.plan import RolloutPlan
from edgeq.fleet.state import RolloutState
from edgeq.fleet.status import DeviceStatus
from edgeq.fleet.summary import RolloutReport
from edgeq.report.safe_text import clean, plain

_PHASE_STYLE = {
    Phase.DONE: "green",
    Phase.CURRENT: "green",
    Phase.FAILED: "red",
    Phase.GATE_FAILED: "bold red",
    Phase.ROLLED_BACK: "yellow",
    Phase.ROLLBACK_PENDING: "bold red",
    Phase.HELD: "yellow",
    Phase.WORKING: "cyan",
    Phase.PENDING: "dim",
}


def _phase(phase: Phase) -> Text:
    return Text(phase.replace("_", " "), style=_PHASE_STYLE.get(phase, ""))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def plan_view(plan: RolloutPlan) -> Group:
    """Waves, budgets and gates of a rollout that has not started."""
    options = plan.options
    title = f"rollout plan: {plan.recipe.name} to {len(plan.hosts)} device(s)"
    waves = Table(title=title, title_justify="left")
    for column in ("wave", "devices", "targets", "failures allowed"):
        waves.add_column(column)
    for index, (names, allowed) in enumerate(zip(plan.waves, plan.allowances, strict=True)):
        label = "canary" if index == 0 and len(plan.waves) > 1 and len(names) == 1 else str(index + 1)
        used = sorted({plan.targets[n] for n in names})
        waves.add_row(label, plain(", ".join(names)), plain(", ".join(used)), str(allowed))
    build = "on every device (--build-each)" if options.build_each else "once per device class, installed on the others"
    lines = [
        f"concurrency: {options.concurrency} device(s) at once; engines built {build}",
        "gates: " + "; ".join(plan.gates),
        "the first wave that fails its gates stops the rollout: its devices stay on (or return to) their previous engine",
    ]
    return Group(waves, *(Text(line) for line in lines))


def live_view(state: RolloutState, now: float | None = None) -> Table:
    """One row per device: its wave, class, current step and state."""
    now = time.time() if now is None else now
    title = f"rollout {state.header.id}"
    table = Table(title=title, title_justify="left")
    for column in ("wave", "device", "class", "step", "state", "time"):
        table.add_column(column)
    for device in state.devices.values():
        step = device.steps[-1] if device.steps else None
        shown = "-"
        if step is not None:
            shown = step.step if step.status != StepStatus.FAILED else f"{step.step} (failed)"
        elapsed = (now - device.steps[0].started) if device.steps and device.phase == Phase.WORKING else None
        probed = device.last(Step.PROBE, Probed)
        table.add_row(str(device.wave + 1), plain(device.name), plain(probed.device_class if probed else "-"), plain(shown),
                      _phase(device.phase), _seconds(elapsed))
    return table


def summary_view(report: RolloutReport) -> Group:
    """The end-of-rollout table and its verdict lines."""
    table = Table(title=f"rollout {report.id}: {report.outcome or 'interrupted'}", title_justify="left")
    for column in ("wave", "device", "result", "engine now", "engine", "drop", "p99 ms", "smoke", "device s", "error"):
        table.add_column(column, overflow="fold")
    for d in report.devices:
        table.add_row(
            str(d.wave + 1),
            plain(d.name),
            _phase(d.phase),
            plain(d.engine_now or "-"),
            plain(d.engine_source or "-"),
            "-" if d.accuracy_drop is None else f"{d.accuracy_drop:.2f}",
            "-" if d.p99_ms is None else f"{d.p99_ms:.2f}",
            {True: "pass", False: "FAIL", None: "-"}[d.smoke_passed],
            f"{d.device_seconds:.1f}",
            plain("; ".join(part for part in (d.error, f"rollback {d.rollback}" if d.rollback else None) if part)),
        )
    lines = [Text(clean(f"wave {w.index + 1}: {w.status}" + (f": {w.reason}" if w.reason else ""))) for w in report.waves]
    lines.append(
        Text(
            f"{report.builds} build(s), {report.installs} install(s) of a prebuilt engine: "
            f"{report.build_seconds_saved:.1f} s of device build time saved"
        )
    )
    lines.append(
        Text(
            f"{report.seconds:.1f} s in all; along each wave's slowest device: {report.device_path_seconds:.1f} s on the "
            f"devices, {report.edgeq_seconds:.1f} s edgeq's own part (connections, transfers, orchestration)"
        )
    )
    return Group(table, *lines)


def status_view(rows: Sequence[DeviceStatus]) -> Table:
    """What each device runs now."""
    table = Table(title="fleet status", title_justify="left")
    for column in ("device", "address", "engine", "recipe", "since", "by", "previous", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *(plain(value) for value in (row.name, row.label, row.engine or ("-" if row.error else "none"), row.recipe or "-",
                                         row.since or "-", row.by or "-", row.previous or "-")),
            Text(clean(row.error or ""), style="red"),
        )
    return table
