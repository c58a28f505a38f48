"""The `edgeq` command line: thin commands that parse, call the library and render.

This package's own module stays light so that `edgeq --version` answers without importing typer, rich or
any model library; every other command line goes through the error boundary, :func:`edgeq.cli.boundary.run`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import edgeq

VERSION_ARGS = ("--version",)


def version_line() -> str:
    """What `edgeq --version` prints."""
    return f"edgeq {edgeq.__version__}"


def run(argv: Sequence[str]) -> int:
    """Run the command line ``argv`` (without the program name); the process exit code."""
    if tuple(argv) == VERSION_ARGS:
        sys.stdout.write(version_line() + "\n")
        return 0
    from edgeq.cli.boundary import run as run_command

    return run_command(argv)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
