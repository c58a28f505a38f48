"""`edgeq gc`: free device disk: old engines, blobs nothing uses, what crashed runs left behind."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeq.cli.app import app, console, print_json
from edgeq.cli.options import DeviceOptions, OutputOptions, grouped
from edgeq.device.workdir import BLOB_GRACE
from edgeq.errors import ExitCode


@app.command("gc")
@grouped
def gc(
    *,
    devices: DeviceOptions,
    output: OutputOptions,
    local: Annotated[bool, typer.Option("--local", help="This machine's work folder (the `local` target).")] = False,
    keep: Annotated[int, typer.Option(min=0, help="Newest engines kept besides the current and the previous one.")] = 1,
    blob_grace: Annotated[
        float, typer.Option(min=0, help="Seconds since a blob was last pushed or used during which it is kept.")
    ] = BLOB_GRACE,
) -> None:
    """Remove old engines (never the current or the previous one), unused blobs and leftovers of crashed runs."""
    chosen = [] if local else devices.resolve(nothing="edgeq gc: give --host user@address[:port], --inventory FILE, or --local")
    from edgeq.deploy.session import DeviceSession
    from edgeq.deploy.wire import GcReport
    from edgeq.remote.group import HostOutcome, on_hosts
    from edgeq.report.gc_view import gc_view

    def task(session: DeviceSession) -> GcReport:
        return session.gc(keep, blob_grace)

    outcomes: list[tuple[str, GcReport | None, str | None]]
    if local:
        with DeviceSession.local(devices.workdir or "~/.edgeq") as session:
            outcomes = [("local", task(session), None)]
    else:
        done: list[HostOutcome] = on_hosts(chosen, lambda transport: task(DeviceSession(transport)))
        outcomes = [(o.host.name or o.host.label, o.value, o.error.message if o.error else None) for o in done]
    if output.as_json:
        print_json([{"device": name, **(report.model_dump(mode="json") if report else {}), "error": error}
                    for name, report, error in outcomes])
    else:
        console.print(gc_view(outcomes))
    raise typer.Exit(int(ExitCode.DEVICE) if any(error for _, _, error in outcomes) else int(ExitCode.OK))
