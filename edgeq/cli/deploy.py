"""`edgeq deploy` (a rollout of one wave over the given devices, each switching on its own gates) and
`edgeq smoke`, over SSH or on this machine (`--target local`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgeq.cli.app import TargetOption, app, console, err_console, print_json, show
from edgeq.cli.options import DeviceOptions, KeepOptions, OutputOptions, TimeoutOptions, grouped
from edgeq.errors import ExitCode
from edgeq.report.safe_text import error_line

if TYPE_CHECKING:
    from edgeq.deploy.plan import DeployPlan
    from edgeq.hosts import Host

RecipeArgument = Annotated[Path, typer.Argument(metavar="RECIPE", help="The recipe YAML file.")]


def _plan_and_hosts(recipe_path: Path, target_name: str, devices: DeviceOptions, *, progress: bool,
                    preflight: bool) -> tuple[DeployPlan, list[Host] | None]:
    """The deploy plan and its hosts (None: this machine, for the local target without --host/--inventory).

    Devices are resolved before the plan, so a wrong host list fails before any calibration runs.
    """
    from edgeq import recipe as recipes
    from edgeq import targets
    from edgeq.deploy.plan import make_plan

    recipe = recipes.load(recipe_path)
    target = targets.resolve(target_name)
    hosts = None
    if target.backend != "onnxruntime" or devices.given:
        hosts = devices.resolve(recipe.device_hosts, nothing=(
            f"{recipe.source}: no device to deploy to: give --host user@address[:port], --inventory FILE, "
            "or devices in the recipe (or use --target local)"))
    return make_plan(recipe, target, progress=progress, preflight=preflight), hosts


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

    plan, hosts = _plan_and_hosts(recipe_path, target_name, devices, progress=not output.as_json, preflight=True)
    run = rollouts.deploy(plan, hosts, workdir=devices.workdir, timeout=timing.timeout, keep=keeping.keep)
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
    from edgeq.fleet.rollout import LOCAL, open_local
    from edgeq.hosts import Host
    from edgeq.remote.group import on_hosts
    from edgeq.remote.timeouts import Timeouts
    from edgeq.remote.transport import SSHTransport
    from edgeq.report.deploy_view import smoke_view

    plan, hosts = _plan_and_hosts(recipe_path, target_name, devices, progress=not output.as_json, preflight=False)
    local = hosts is None
    chosen = [Host(address=LOCAL, workdir=devices.workdir or "~/.edgeq")] if local else list(hosts or [])
    timeouts = Timeouts(connect=timing.timeout, channel=timing.timeout) if timing.timeout else None
    outcomes = on_hosts(chosen, lambda transport: DeviceSession(transport).smoke(plan), limit=1, timeouts=timeouts,
                        opener=open_local if local else SSHTransport.open)
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
