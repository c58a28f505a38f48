"""`edgeq deploy` and `edgeq smoke`: one device at a time, over SSH or on this machine (`--target local`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeq.cli.app import JsonOption, TargetOption, app, console, err_console, print_json
from edgeq.errors import DeviceError, ExitCode, GateError
from edgeq.report.safe_text import error_line

HostOption = Annotated[list[str], typer.Option("--host", "-H", help="user@address[:port]; repeat for several devices.")]
InventoryOption = Annotated[Optional[Path], typer.Option("--inventory", "-i", help="Inventory file (edgeq YAML or Ansible).")]
LimitOption = Annotated[list[str], typer.Option("--limit", "-l", help="Only these inventory hosts or groups (globs).")]
KeyOption = Annotated[Optional[Path], typer.Option("--key", help="SSH private key for --host.")]
KnownHostsOption = Annotated[
    Optional[Path], typer.Option("--known-hosts", help="known_hosts file for --host (default ~/.ssh/known_hosts).")
]
PythonOption = Annotated[Optional[str], typer.Option("--python", help="The device's Python for --host (default python3).")]
WorkdirOption = Annotated[Optional[str], typer.Option("--workdir", help="Device work folder for --host (default ~/.edgeq).")]


def _plan_and_devices(recipe_path, target_name, hosts, inventory, limit, key, known_hosts, python, workdir,  # noqa: ANN001, ANN202
                      *, progress: bool, preflight: bool):
    """The recipe, its deploy plan, and (label, opener) per device: this machine for the local target, else SSH hosts.

    Devices are resolved before the plan, so a wrong host list fails before any calibration runs.
    """
    from edgeq import recipe as recipes
    from edgeq import targets
    from edgeq.deploy.hosts import resolve_hosts
    from edgeq.deploy.plan import make_plan
    from edgeq.deploy.session import DeviceSession

    recipe = recipes.load(recipe_path)
    target = targets.resolve(target_name)
    if target.backend == "onnxruntime" and not hosts and inventory is None:
        devices = [("local", lambda: DeviceSession.local(workdir or "~/.edgeq"))]
    else:
        chosen = resolve_hosts(recipe, hosts, inventory, limit, key=key, known_hosts=known_hosts, python=python,
                               workdir=workdir)
        devices = [(host.label, lambda host=host: DeviceSession.open(host)) for host in chosen]
    return recipe, make_plan(recipe, target, progress=progress, preflight=preflight), devices


def _each_device(sessions: list, work: Callable) -> int:  # type: ignore[type-arg]
    """Run ``work(session)`` on each device in turn; one device's failure does not stop the next."""
    worst = ExitCode.OK
    for label, opener in sessions:
        try:
            with opener() as session:
                work(session)
        except (DeviceError, GateError) as exc:
            err_console.print(error_line(exc.message if label in exc.message else f"{label}: {exc.message}"),
                              highlight=False, soft_wrap=True)
            worst = max(worst, exc.exit_code)
    return int(worst)


@app.command("deploy")
def deploy(
    recipe_path: Annotated[Path, typer.Argument(metavar="RECIPE", help="The recipe YAML file.")],
    target_name: TargetOption = "jetson-orin",
    hosts: HostOption = [],  # noqa: B006 (typer needs a literal default)
    inventory: InventoryOption = None,
    limit: LimitOption = [],  # noqa: B006
    key: KeyOption = None,
    known_hosts: KnownHostsOption = None,
    python: PythonOption = None,
    workdir: WorkdirOption = None,
    html: Annotated[bool, typer.Option(help="Also write the HTML report with charts.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Push the model, cache and validation data to a device, build the INT8 engine there, measure, gate, activate."""
    from edgeq.deploy.pipeline import deploy_one
    from edgeq.report.deploy_html import write_deploy_html
    from edgeq.report.deploy_view import deploy_view

    recipe, plan, sessions = _plan_and_devices(recipe_path, target_name, hosts, inventory, limit, key, known_hosts, python,
                                               workdir, progress=not as_json, preflight=True)
    reports = []

    def one(session) -> None:  # noqa: ANN001
        with console.status(f"{session.label}: starting", spinner="dots") as status:
            report = deploy_one(session, plan, on_step=lambda step: status.update(f"{session.label}: {step}"))
        if html:
            write_deploy_html(report, recipe, plan.calibration.artifacts.validation, Path(report.files["folder"]),
                              Path(report.files["html"]))
        reports.append(report)
        if not as_json:
            console.print(deploy_view(report))
        if not report.passed:
            raise GateError(f"{session.label}: " + "; ".join(g.describe() for g in report.gates if not g.passed))

    code = _each_device(sessions, one)
    if as_json:
        print_json([r.to_dict() for r in reports])
    raise typer.Exit(code)


@app.command("smoke")
def smoke(
    recipe_path: Annotated[Path, typer.Argument(metavar="RECIPE", help="The recipe YAML file.")],
    target_name: TargetOption = "jetson-orin",
    hosts: HostOption = [],  # noqa: B006
    inventory: InventoryOption = None,
    limit: LimitOption = [],  # noqa: B006
    key: KeyOption = None,
    known_hosts: KnownHostsOption = None,
    python: PythonOption = None,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
) -> None:
    """A few fixed inputs through the installed engine, compared on the device with the host's FP32 outputs."""
    from edgeq.report.deploy_view import smoke_view

    _, plan, sessions = _plan_and_devices(recipe_path, target_name, hosts, inventory, limit, key, known_hosts, python,
                                          workdir, progress=not as_json, preflight=False)
    results = []

    def one(session) -> None:  # noqa: ANN001
        report = session.smoke(plan)
        results.append({"host": session.label, **report.to_dict()})
        if not as_json:
            console.print(smoke_view(session.label, report))
        if not report.passed:
            raise GateError(f"{session.label}: smoke test failed (agreement {report.comparison.top1_agreement:.3f}, "
                            f"cosine {report.comparison.cosine:.4f})")

    code = _each_device(sessions, one)
    if as_json:
        print_json(results)
    raise typer.Exit(code)
