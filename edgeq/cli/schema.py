"""`edgeq schema`: write the recipe's JSON Schema for editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeq import atomic, recipe
from edgeq.cli.app import app, console


@app.command("schema")
def schema(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print (or write) the recipe JSON Schema, e.g. for yaml-language-server."""
    text = json.dumps(recipe.json_schema(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic.write_text(out, text)
        console.print(f"wrote {out}")
