"""`edgeq check`: per-layer INT8 preflight of a model (or a recipe's model) for a target's GPU and DLA."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgeq import recipe as recipes
from edgeq import targets
from edgeq.cli.app import JsonOption, TargetOption, app, console, err_console, print_json
from edgeq.errors import GateError, InputError

if TYPE_CHECKING:
    import onnx

    from edgeq.check import CheckReport

RECIPE_SUFFIXES = (".yaml", ".yml")


def _parse_shapes(options: list[str]) -> dict[str, list[int | str]]:
    """``name=1x3x224x224`` options as {name: dims}; a non-number dim stays symbolic."""
    shapes: dict[str, list[int | str]] = {}
    for option in options:
        name, sep, dims = option.partition("=")
        if not sep or not name or not dims:
            raise InputError(f"--shape {option!r}: expected NAME=DIMS, e.g. input=1x3x224x224")
        shapes[name] = [int(d) if d.lstrip("-").isdigit() else d for d in dims.split("x")]
    return shapes


def _load(
    path: Path, shapes: dict[str, list[int | str]], dla: bool = False
) -> tuple[onnx.ModelProto, int | None, bool, recipes.Recipe | None]:
    """The shape-inferred model, the recipe's DLA core, whether INT8 is asked for (a recipe says; a bare model: yes), the recipe.

    A recipe's input shapes, as deploy builds them (symbolic dims = 1), apply first, then ``shapes`` (from --shape).
    """
    from edgeq import model as model_io

    dla_core, int8, recipe = None, True, None
    if path.suffix.lower() in RECIPE_SUFFIXES:
        recipe = recipes.load(path)
        path = recipe.model_path
        # edgeq builds static engines (a symbolic dim such as the batch becomes 1, as `deploy` does)
        # (a ranged dim at its opt; for the DLA, a range that is not one size stays dynamic)
        dla = dla or recipe.build.dla_core is not None
        shapes = {**{spec.name: spec.built_shape(dla) for spec in recipe.inputs}, **shapes}
        dla_core, int8 = recipe.build.dla_core, recipe.build.precision == "int8"
    model = model_io.load(path)
    return (model_io.with_input_shapes(model, shapes, path) if shapes else model), dla_core, int8, recipe


@app.command("check")
def check(
    path: Annotated[Path, typer.Argument(metavar="MODEL_OR_RECIPE", help="A recipe.yaml (its model, with the recipe's input shapes) or a model.onnx.")],
    target: TargetOption = "jetson-orin",
    dla: Annotated[bool, typer.Option("--dla", help="Also check which layers run on DLA core 0 (or --dla-core).")] = False,
    dla_core: Annotated[int | None, typer.Option("--dla-core", min=0, help="Check for this DLA core (implies --dla).")] = None,
    shape: Annotated[list[str] | None, typer.Option("--shape", help="Fix an input's shape, e.g. --shape x=1x3x224x224 (repeatable).")] = None,
    all_nodes: Annotated[bool, typer.Option("--all", help="List every node in the table, INT8 ones included.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Per-layer INT8 preflight: what TensorRT on the target does with each node, offline.

    Exit 0 when the model will build (fallbacks allowed), 1 when it has blockers, 2 for bad input.
    """
    profile = targets.resolve(target)
    with err_console.status(f"checking {path} for {profile.name}", spinner="dots") if not as_json else nullcontext():
        model, recipe_dla_core, int8, recipe = _load(path, _parse_shapes(shape or []), dla or dla_core is not None)
        core = dla_core if dla_core is not None else (0 if dla else recipe_dla_core)
        from edgeq.check import check_model
        from edgeq.deploy.plan import auto_quantization, choose_quantization

        # the INT8 path deploy will take (implicit or explicit), so that check names the same one
        quantization = (choose_quantization(recipe, profile) if recipe is not None
                        else auto_quantization(profile, core is not None and profile.usable_dla_cores > 0))
        report = check_model(model, profile, dla_core=core, int8=int8, name=path.name, quantization=quantization)
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        from edgeq.report.check_view import check_view

        console.print(check_view(report, all_nodes=all_nodes))
    _exit_for(report, path)


def _exit_for(report: CheckReport, path: Path) -> None:
    if report.ok:
        return
    found = "; ".join(g.message for g in report.blocking_gates)
    raise GateError(f"{path}: will not build for {report.target}: {found}")

