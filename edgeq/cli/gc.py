"""`edgeq gc`: free device disk: old engines, blobs nothing uses, what crashed runs left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeq.cli.app import JsonOption, app, console, print_json
from edgeq.cli.deploy import HostOption, InventoryOption, KeyOption, KnownHostsOption, LimitOption, PythonOption, WorkdirOption
from edgeq.device.workdir import BLOB_GRACE
from edgeq.errors import ExitCode, InputError


@app.command("gc")
def gc(
    hosts: HostOption = [],  # noqa: B006 (typer needs a literal default)
    inventory: InventoryOption = None,
    limit: LimitOption = [],  # noqa: B006
    key: KeyOption = None,
    known_hosts: KnownHostsOption = None,
    python: PythonOption = None,
    workdir: WorkdirOption = None,
    local: Annotated[bool, typer.Option("--local", help="This machine's work folder (the `local` target).")] = False,
    keep: Annotated[int, typer.Option(min=0, help="Newest engines kept besides the current and the previous one.")] = 1,
    blob_grace: Annotated[
        float, typer.Option(min=0, help="Seconds since a blob was last pushed or used during which it is kept.")
    ] = BLOB_GRACE,
    as_json: JsonOption = False,
) -> None:
    """Remove old engines (never the current or the previous one), unused blobs and leftovers of crashed runs."""
    chosen = [] if local else _hosts(hosts, inventory, limit, key=key, known_hosts=known_hosts, python=python, workdir=workdir)
    from edgeq.deploy.session import DeviceSession
    from edgeq.remote.group import HostOutcome, on_hosts
    from edgeq.report.gc_view import gc_view

    task = lambda session: session.gc(keep, blob_grace)  # noqa: E731
    if local:
        with DeviceSession.local(workdir or "~/.edgeq") as session:
            outcomes = [("local", task(session), None)]
    else:
        done: list[HostOutcome] = on_hosts(chosen, lambda transport: task(DeviceSession(transport)))  # type: ignore[type-arg]
        outcomes = [(o.host.name or o.host.label, o.value, o.error.message if o.error else None) for o in done]
    if as_json:
        print_json([{"device": name, **(report.to_dict() if report else {}), "error": error}
                    for name, report, error in outcomes])
    else:
        console.print(gc_view(outcomes))
    raise typer.Exit(int(ExitCode.DEVICE) if any(error for _, _, error in outcomes) else int(ExitCode.OK))


def _hosts(specs: list[str], inventory: Optional[Path], limit: list[str], **fields: object) -> list:  # type: ignore[type-arg]
    from edgeq.deploy.hosts import parse_host
    from edgeq.fleet.inventory import load_inventory, select_hosts

    if specs:
        return select_hosts([parse_host(spec, **fields) for spec in specs], limit)
    if inventory is not None:
        return select_hosts(load_inventory(inventory), limit)
    raise InputError("edgeq gc: give --host user@address[:port], --inventory FILE, or --local")

