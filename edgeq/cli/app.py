"""The typer application, its global options, and the output helpers every command uses."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType

from edgeq.cli import version_line
from edgeq.cli.usage import EdgeqTyper
from edgeq.errors import ExitCode

app = EdgeqTyper(
    name="edgeq",
    help="Take an ONNX model to NVIDIA Jetson devices as a validated TensorRT INT8 engine, from one recipe file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# markup=False: no string is ever read as rich markup (file, tensor and device names may hold "[/b]");
# styles come from Text objects.
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]
TargetOption = Annotated[str, typer.Option("--target", "-t", help="Target profile or alias (`edgeq targets` lists them).")]
FleetTargetOption = Annotated[
    str | None, typer.Option("--target", "-t", help="Target profile for hosts whose inventory entry names none.")
]


def _version(value: bool) -> None:
    if value:
        console.print(version_line())
        raise typer.Exit(int(ExitCode.OK))


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """edgeq: check, calibrate, deploy, smoke-test and roll out INT8 engines for Jetson."""


def show(renderable: RenderableType) -> None:
    """Print a view on stdout with its lines whole: a path line (:func:`~edgeq.report.safe_text.path_line`) is never
    cut at the console's width."""
    console.print(renderable, crop=False)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout, nothing else."""
    typer.echo(json.dumps(data, indent=2, default=str))
