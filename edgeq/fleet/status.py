"""`edgeq status`: what each device of a fleet runs now, who switched it and when."""

from __future__ import annotations

from pydantic import BaseModel

from edgeq.deploy.session import DeviceSession
from edgeq.deploy.wire import StatusReport
from edgeq.hosts import Host, host_name
from edgeq.remote.group import on_hosts
from edgeq.remote.timeouts import Timeouts


class DeviceStatus(BaseModel):
    """One device's active engine and where it came from; ``error`` when the device could not be asked."""

    name: str
    label: str
    engine: str | None = None
    previous: str | None = None
    recipe: str | None = None
    since: str | None = None
    by: str | None = None
    rollout: str | None = None
    engines: list[str] = []
    error: str | None = None


def describe(host: Host, report: StatusReport) -> DeviceStatus:
    """The newest history entry that made the current engine active says when and by whom."""
    entry = next((e for e in reversed(report.history) if e.engine_id == report.current), None)
    meta = dict(report.build.meta) if report.build else {}
    if entry is not None:
        meta.update(entry.meta)
    return DeviceStatus(
        name=host_name(host),
        label=host.label,
        engine=report.current,
        previous=report.previous,
        recipe=meta.get("recipe"),
        since=entry.at if entry else None,
        by=meta.get("by"),
        rollout=meta.get("rollout"),
        engines=report.engines,
    )


def fleet_status(hosts: list[Host], *, concurrency: int = 8, timeouts: Timeouts | None = None) -> list[DeviceStatus]:
    """Ask every device at once (up to ``concurrency``); an unreachable one is a row with its error."""
    outcomes = on_hosts(hosts, lambda transport: DeviceSession(transport).status(), limit=concurrency, timeouts=timeouts)
    rows = []
    for o in outcomes:
        if o.value is not None:
            rows.append(describe(o.host, o.value))
        else:
            error = o.error.message if o.error else "no answer"
            rows.append(DeviceStatus(name=host_name(o.host), label=o.host.label, error=error))
    return rows
