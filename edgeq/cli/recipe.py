"""`edgeq recipe`: validate a recipe, or write its JSON Schema for editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from edgeq import atomic
from edgeq import recipe as recipes
from edgeq.cli.app import JsonOption, app, console, print_json
from edgeq.cli.usage import EdgeqTyper
from edgeq.report.safe_text import clean

recipe_app = EdgeqTyper(help="Validate a recipe, or write the recipe JSON Schema.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")


@recipe_app.command("validate")
def validate(
    path: Annotated[Path, typer.Argument(metavar="RECIPE", help="The recipe YAML file.")],
    as_json: JsonOption = False,
) -> None:
    """Check a recipe: every field, that the files it names exist, and that its data reads as calibrate will read it
    (folders that hold images, .npz arrays of the inputs' shapes, the same classes, labels for every sample)."""
    recipe = recipes.load(path)
    recipes.check_paths(recipe)
    found = [_data(recipe, spec, field) for spec, field in ((recipe.calibration, "calibration"), (recipe.validation, "validation"))]
    if as_json:
        print_json(recipe.model_dump(mode="json"))
    else:
        lines = [f" {path}: recipe '{recipe.name}', model {recipe.model_path}", *found]
        console.print(Text.assemble(("ok", "green"), clean("\n".join(lines))), soft_wrap=True)


def _data(recipe: recipes.Recipe, spec: recipes.DataSpec, field: str) -> str:
    """Open ``field``'s data as calibrate does (every input error raised here); a line that says what it holds."""
    from edgeq import labels
    from edgeq.data import check_same_classes
    from edgeq.feeds import Feeds

    feeds = Feeds(recipe, spec, field)
    if field == "validation":
        check_same_classes(Feeds(recipe, recipe.calibration, "calibration").dataset, feeds.dataset)
        labels.load(recipe, feeds.dataset)
    dataset = feeds.dataset
    kind = f"{len(dataset.classes)} classes" if dataset.classes else "no class folders" if dataset.files else "an .npz"
    return f"  {field}: {len(dataset)} of {dataset.total} samples from {dataset.source} ({kind})"


@recipe_app.command("schema")
def schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print (or write) the recipe JSON Schema, e.g. for yaml-language-server."""
    text = json.dumps(recipes.json_schema(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic.write_text(out, text)
        console.print(f"wrote {out}")
