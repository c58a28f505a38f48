"""The `edgeq` command line: thin commands that parse, call the library and render."""

from __future__ import annotations

import sys

from edgeq.cli.app import app
from edgeq.cli import calibrate, check, deploy, recipe, rollout, targets  # noqa: F401  (register commands)
from edgeq.errors import EdgeqError, ExitCode


def main() -> None:
    """Console-script entry point: run the app; an EdgeqError becomes one message and its exit code."""
    try:
        code = app(standalone_mode=False)  # returns typer.Exit's code instead of raising it
    except EdgeqError as exc:
        from edgeq.cli.app import err_console

        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False, markup=True)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(int(ExitCode.BAD_INPUT))
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
    sys.exit(code if isinstance(code, int) else int(ExitCode.OK))
