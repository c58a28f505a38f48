"""`edgeq targets`: list the device profiles, or show one."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeq import targets as target_profiles
from edgeq.cli.app import JsonOption, app, console, print_json
from edgeq.report.targets_view import target_detail, targets_table

targets_app = typer.Typer(help="List the target profiles, or show one.", invoke_without_command=True, no_args_is_help=False)
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
    """Show one profile in full, with the source of each fact."""
    target = target_profiles.resolve(name)
    if as_json:
        print_json(target.model_dump(mode="json"))
    else:
        console.print(target_detail(target))
