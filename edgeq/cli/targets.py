"""`edgeq targets`: list the device profiles, or show one."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeq import targets as target_profiles
from edgeq.calibrate.host import host_arithmetic
from edgeq.cli.app import JsonOption, app, console, print_json
from edgeq.cli.usage import EdgeqTyper
from edgeq.report.targets_view import target_detail, targets_table

targets_app = EdgeqTyper(help="List the target profiles, or show one.", invoke_without_command=True, no_args_is_help=False)
app.add_typer(targets_app, name="targets")


@targets_app.callback()
def list_targets(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List every target profile with its module, JetPack, TensorRT, compute capability and DLA cores."""
    if ctx.invoked_subcommand is not None:
        return
    found = target_profiles.all_targets()
    if as_json:
        print_json([t.model_dump(mode="json") for t in found])
    else:
        console.print(targets_table(found))


@targets_app.command("show")
def show(name: Annotated[str, typer.Argument(help="Profile name or alias.")], as_json: JsonOption = False) -> None:
    """Show one profile in full, with the source of each fact (for `local`: how this CPU sums int8 products)."""
    target = target_profiles.resolve(name)
    arithmetic = host_arithmetic() if target.backend == "onnxruntime" else None
    if as_json:
        data = target.model_dump(mode="json")
        if arithmetic is not None:
            data["int8_arithmetic"] = arithmetic.to_dict()
        print_json(data)
    else:
        console.print(target_detail(target, arithmetic))
