"""`edgeq deploy` (a rollout of one wave over the given devices, each switching on its own gates) and
`edgeq smoke`, over SSH or on this machine (`--target local`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgeq.cli.app import TargetOption, app, console, err_console, print_json, show
from edgeq.cli.options import CalibrationOptions, DeviceOptions, KeepOptions, OutputOptions, TimeoutOptions, grouped
from edgeq.errors import ExitCode
from edgeq.report.safe_text import error_line

if TYPE_CHECKING:
    from edgeq.deploy.plan import DeployPlan
    from edgeq.hosts import Host
    from edgeq.remote.group import Opener

RecipeArgument = Annotated[Path, typer.Argument(metavar="RECIPE", help="The recipe YAML file.")]


@contextmanager
def _planned(recipe_path: Path, target_name: str, devices: DeviceOptions, timing: TimeoutOptions, *, progress: bool,
             preflight: bool, fit_budget: bool | None = None) -> Iterator[tuple[DeployPlan, list[Host] | None, Opener]]:
    """The deploy plan, its hosts (None: this machine, for the local target without --host/--inventory) and the
    opener of their connections.

    Devices are resolved and reached (connected, host keys verified) before the plan, so a wrong host list or an
    unreachable device fails in seconds, before any calibration runs; the connections are kept for the work.
    """
    from edgeq import recipe as recipes
    from edgeq import targets
    from edgeq.deploy.plan import make_plan
    from edgeq.fleet.rollout import open_local
    from edgeq.remote.group import reach

    recipe = recipes.load(recipe_path)
    target = targets.resolve(target_name)
    if target.backend == "onnxruntime" and not devices.given:
        yield make_plan(recipe, target, progress=progress, preflight=preflight, fit_budget=fit_budget), None, open_local
        return
    hosts = devices.resolve(recipe.device_hosts, nothing=(
        f"{recipe.source}: no device to deploy to: give --host user@address[:port], --inventory FILE, "
        "or devices in the recipe (or use --target local)"))
    with reach(hosts, timeouts=timing.timeouts) as reached:
        for label, error in reached.errors.items():
            _error(label, f"{error.message} (the other devices go on)")
        yield make_plan(recipe, target, progress=progress, preflight=preflight, fit_budget=fit_budget), hosts, reached.opener()


def _error(label: str, message: str) -> None:
    """One device's failure, on stderr; the device's text is shown literally (no markup, no escapes)."""
    shown = message if message.startswith(label) else f"{label}: {message}"
    err_console.print(error_line(shown), highlight=False, soft_wrap=True)


@app.command("deploy")
@grouped
def deploy(
    recipe_path: RecipeArgument,
    *,
    devices: DeviceOptions,
    timing: TimeoutOptions,
    output: OutputOptions,
    keeping: KeepOptions,
    calibrating: CalibrationOptions,
    target_name: TargetOption = "jetson-orin",
    html: Annotated[bool, typer.Option(help="Also write the HTML report with charts.")] = True,
) -> None:
    """Push the model, cache and validation data to each device, build the INT8 engine there, measure, gate
    (accuracy, latency, smoke test), and switch the devices whose gates passed."""
    from edgeq.deploy.report import deploy_report
    from edgeq.deploy.steps import Phase
    from edgeq.fleet import rollout as rollouts
    from edgeq.progress import progress
    from edgeq.report.deploy_html import write_deploy_html
    from edgeq.report.deploy_view import deploy_view
    from edgeq.report.step_progress import step_watcher

    with _planned(recipe_path, target_name, devices, timing, progress=not output.as_json, preflight=True,
                  fit_budget=calibrating.fit_budget) as (plan, hosts, opener):
        run = rollouts.deploy(plan, hosts, workdir=devices.workdir, timeout=timing.timeout, keep=keeping.keep, opener=opener)
        labels = {h.name or h.label: h.label for h in run.header.hosts}
        with progress(not output.as_json) as bar:
            run.run(step_watcher(bar, labels))
    worst, reports = ExitCode.OK, []
    for name, device in run.state.devices.items():
        label = labels[name]
        report = deploy_report(plan, label, device)
        if report is not None:
            if html:
                write_deploy_html(report, plan.recipe, plan.calibration.artifacts.validation, Path(report.files["folder"]),
                                  Path(report.files["html"]))
            reports.append(report)
            if not output.as_json:
                show(deploy_view(report))
        if device.phase != Phase.DONE:
            failed = device.failure or device.phase
            worst = max(worst, ExitCode.DEVICE if failed == Phase.FAILED else ExitCode.GATE_FAILED)
            runs = device.engine_now(plan.engine_id)
            told = f" (the device runs engine {runs})" if runs else ""
            _error(label, (device.error or f"ended {device.phase}") + told)
    if output.as_json:
        print_json([r.model_dump(mode="json") for r in reports])
    raise typer.Exit(int(worst))


@app.command("smoke")
@grouped
def smoke(
    recipe_path: RecipeArgument,
    *,
    devices: DeviceOptions,
    timing: TimeoutOptions,
    output: OutputOptions,
    target_name: TargetOption = "jetson-orin",
) -> None:
    """A few fixed inputs through each device's installed engine, compared there with the host's FP32 outputs."""
    from edgeq.deploy.session import DeviceSession
    from edgeq.fleet.rollout import LOCAL
    from edgeq.hosts import Host
    from edgeq.remote.group import on_hosts
    from edgeq.report.deploy_view import smoke_view

    with _planned(recipe_path, target_name, devices, timing, progress=not output.as_json, preflight=False) as (
            plan, hosts, opener):
        chosen = [Host(address=LOCAL, workdir=devices.workdir or "~/.edgeq")] if hosts is None else list(hosts)
        outcomes = on_hosts(chosen, lambda transport: DeviceSession(transport).smoke(plan), limit=1,
                            timeouts=timing.timeouts, opener=opener)
    worst, results = ExitCode.OK, []
    for outcome in outcomes:
        label = outcome.host.label
        if outcome.value is None:
            worst = max(worst, outcome.error.exit_code if outcome.error else ExitCode.DEVICE)
            _error(label, outcome.error.message if outcome.error else "no answer")
            continue
        report = outcome.value
        results.append({"host": label, **report.model_dump(mode="json")})
        if not output.as_json:
            console.print(smoke_view(label, report))
        if not report.passed:
            worst = max(worst, ExitCode.GATE_FAILED)
            _error(label, f"smoke test failed (agreement {report.comparison.top1_agreement:.3f}, "
                          f"cosine {report.comparison.cosine:.4f})")
    if output.as_json:
        print_json(results)
    raise typer.Exit(int(worst))
