"""`edgeq rollback`: devices that run a recipe's engine go back to the engine they ran before, verified by smoke."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeq.cli.app import FleetTargetOption, app, console, print_json
from edgeq.cli.options import CalibrationOptions, DeviceOptions, OutputOptions, TimeoutOptions, grouped
from edgeq.errors import InputError


@app.command("rollback")
@grouped
def rollback(
    recipe_path: Annotated[Path, typer.Argument(metavar="RECIPE", help="The recipe YAML file whose engine is rolled back.")],
    *,
    devices: DeviceOptions,
    timing: TimeoutOptions,
    output: OutputOptions,
    calibrating: CalibrationOptions,
    target_name: FleetTargetOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Devices worked on at once.")] = 4,
) -> None:
    """Move each device that runs RECIPE's engine back to its previous engine and smoke-test that one; a device on
    another engine is left on it and smoke-tested. Exit 3 when a device could not be reached or rolled back."""
    from edgeq import recipe as recipes
    from edgeq import targets
    from edgeq.fleet import rollout as rollouts
    from edgeq.hosts import host_name
    from edgeq.report.rollout_view import summary_view

    recipe = recipes.load(recipe_path)
    hosts = devices.resolve(recipe.device_hosts, nothing="edgeq rollback: give --inventory FILE or --host user@address[:port]")
    chosen: dict[str, str] = {}
    for host in hosts:
        name = host.target or target_name
        if name is None:
            raise InputError(f"host {host_name(host)!r}: no target profile: set 'target' for it in the inventory, or pass --target")
        chosen[host_name(host)] = targets.resolve(name).name
    run = rollouts.rollback(recipe, hosts, chosen, timeout=timing.timeout, concurrency=concurrency,
                            progress=not output.as_json, fit_budget=calibrating.fit_budget)
    report = run.roll_back_all()
    if output.as_json:
        print_json(report.model_dump(mode="json"))
    else:
        console.print(summary_view(report))
    raise typer.Exit(report.exit_code or 0)
