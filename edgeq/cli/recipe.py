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
    """Check a recipe: every field, and that the files it names exist."""
    recipe = recipes.load(path)
    recipes.check_paths(recipe)
    if as_json:
        print_json(recipe.model_dump(mode="json"))
    else:
        console.print(Text.assemble(("ok", "green"), clean(f" {path}: recipe '{recipe.name}', model {recipe.model_path}")))


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
