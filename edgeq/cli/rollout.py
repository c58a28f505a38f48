"""`edgeq rollout` (fleet rollouts in waves, with gates, rollback and resume) and `edgeq status`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgeq.cli.app import FleetTargetOption, app, console, err_console, print_json, show
from edgeq.cli.options import CalibrationOptions, DeviceOptions, KeepOptions, OutputOptions, TimeoutOptions, grouped
from edgeq.errors import ExitCode, InputError
from edgeq.fleet.waves import DEFAULT_WAVES
from edgeq.report.safe_text import error_line

if TYPE_CHECKING:
    from edgeq.fleet.plan import RolloutOptions, RolloutPlan
    from edgeq.hosts import Host


@app.command("rollout")
@grouped
def rollout(
    recipe_path: Annotated[Path | None, typer.Argument(metavar="RECIPE", help="The recipe YAML file.")] = None,
    *,
    devices: DeviceOptions,
    timing: TimeoutOptions,
    output: OutputOptions,
    keeping: KeepOptions,
    calibrating: CalibrationOptions,
    target_name: FleetTargetOption = None,
    waves: Annotated[str, typer.Option(help="Cumulative stages: counts or percentages of the fleet.")] = DEFAULT_WAVES,
    concurrency: Annotated[int, typer.Option(help="Devices worked on at once.")] = 4,
    max_failures: Annotated[str, typer.Option(help="Device failures each wave may have: N or P% of the wave.")] = "0",
    build_each: Annotated[bool, typer.Option("--build-each", help="Build on every device, not once per device class.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and stop.")] = False,
    resume_id: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="ID",
            help="Continue rollout ID as planned (its journal is under the recipe's edgeq-out/rollouts; or give the .jsonl); "
                 "of an ended rollout, retry the rollbacks that could not run and the devices that failed in passed waves.",
        ),
    ] = None,
) -> None:
    """Roll a recipe's engine out to a fleet in waves: canary first, gates per wave, rollback, resume."""
    from rich.live import Live

    from edgeq.fleet import rollout as rollouts
    from edgeq.fleet.plan import RolloutOptions
    from edgeq.progress import progress
    from edgeq.report.rollout_view import live_view, plan_view, summary_view
    from edgeq.report.safe_text import path_line
    from edgeq.report.step_progress import step_watcher

    as_json = output.as_json
    if resume_id is not None:
        run = rollouts.resume(_journal_path(recipe_path, resume_id), timeout=timing.timeout, progress=not as_json)
    else:
        options = RolloutOptions(waves, concurrency, max_failures, build_each, target_name, timing.timeout, keeping.keep,
                                 calibrating.fit_budget)
        plan = _plan(recipe_path, devices, options)
        if as_json and dry_run:
            print_json(plan.describe())
            raise typer.Exit(int(ExitCode.OK))
        if not as_json:
            console.print(plan_view(plan))
        if dry_run:
            raise typer.Exit(int(ExitCode.OK))
        _reach(plan.hosts, timing)
        run = rollouts.begin(plan, progress=not as_json)
    if not as_json:
        show(path_line(f"rollout {run.header.id}: journal {run.journal.path if run.journal else '-'}"))
        if console.is_terminal:
            with Live(console=console, get_renderable=lambda: live_view(run.state), transient=True):
                report = run.run()
        else:  # a log: one line per device step instead of a live view nobody sees
            with progress() as bar:
                report = run.run(step_watcher(bar, {}))
        console.print(summary_view(report))
        show(path_line(f"report: {run.report_path}"))
        if report.exit_code:
            show(path_line(f"resume or inspect with: edgeq rollout {run.header.recipe} --resume {run.header.id}"))
    else:
        report = run.run()
        print_json(report.model_dump(mode="json"))
    raise typer.Exit(report.exit_code or 0)


def _reach(hosts: list[Host], timing: TimeoutOptions) -> None:
    """Connect to every device (host keys verified) before calibrating: none reachable fails in seconds (exit 3);
    the ones that cannot be reached are named, and their waves try them again."""
    from edgeq.remote.group import reach

    reached = reach(hosts, timeouts=timing.timeouts, keep=False)
    for error in reached.errors.values():
        err_console.print(error_line(f"{error.message} (tried again in its wave)"), highlight=False, soft_wrap=True)


def _journal_path(recipe_path: Path | None, rollout_id: str) -> Path:
    """A journal named by path, or by id under the recipe's rollouts folder (./edgeq-out/rollouts without one)."""
    from edgeq import recipe as recipes
    from edgeq.fleet import journal

    if rollout_id.endswith(".jsonl"):
        path = Path(rollout_id)
        if not path.is_file():
            raise InputError(f"{path}: rollout journal not found")
        return path
    folder = journal.rollouts_dir(recipes.load(recipe_path)) if recipe_path else Path("edgeq-out") / "rollouts"
    return journal.find(folder, rollout_id)


def _plan(recipe_path: Path | None, devices: DeviceOptions, options: RolloutOptions) -> RolloutPlan:
    from edgeq import recipe as recipes
    from edgeq.fleet.plan import plan_rollout

    if recipe_path is None:
        raise InputError("edgeq rollout: give the recipe file (or --resume ID)")
    recipe = recipes.load(recipe_path)
    hosts = devices.resolve(recipe.device_hosts, nothing="no devices to roll out to: give --inventory, or devices in the recipe")
    return plan_rollout(recipe, hosts, options, devices.inventory.resolve() if devices.inventory else None)


@app.command("status")
@grouped
def status(*, devices: DeviceOptions, timing: TimeoutOptions, output: OutputOptions) -> None:
    """What each device runs now: engine, recipe, since when, by whom."""
    # before the heavy imports: a bad inventory fails at once
    hosts = devices.resolve(nothing="edgeq status: give --inventory FILE or --host user@address[:port]")
    from edgeq.fleet.status import fleet_status
    from edgeq.remote.timeouts import Timeouts
    from edgeq.report.rollout_view import status_view

    timeout = timing.timeout
    rows = fleet_status(hosts, timeouts=Timeouts(connect=timeout, channel=timeout) if timeout else None)
    if output.as_json:
        print_json([row.model_dump(mode="json") for row in rows])
    else:
        console.print(status_view(rows))
    raise typer.Exit(int(ExitCode.DEVICE) if any(row.error for row in rows) else int(ExitCode.OK))
