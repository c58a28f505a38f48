"""The one error boundary of every command (:func:`run`): an :class:`~edgeq.errors.EdgeqError` becomes one
message and its documented exit code, a usage error one line and exit 2, and anything unexpected one line,
exit 4 and a saved traceback: never a bare traceback. Importing this module registers every command.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence

import typer

import edgeq
from edgeq.cli import calibrate, check, deploy, gc, recipe, rollback, rollout, targets  # noqa: F401  (register commands)
from edgeq.cli.app import app, err_console
from edgeq.errors import EdgeqError, ExitCode
from edgeq.report.safe_text import clean, error_line

INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


def save_traceback(exc: BaseException, argv: Sequence[str]) -> str:
    """Write the traceback of ``exc`` with the command line and versions to a private file; its path."""
    fd, path = tempfile.mkstemp(prefix=f"edgeq-internal-error-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as out:
        out.write(f"edgeq {edgeq.__version__}, Python {platform.python_version()} on {platform.platform()}\n")
        out.write(f"command: edgeq {' '.join(argv)}\n\n")
        out.write("".join(traceback.format_exception(exc)))
    return path


def _say(message: str) -> None:
    """``error: MESSAGE`` on stderr, shown literally (device text may hold markup or escapes), never wrapped."""
    err_console.print(error_line(message), highlight=False, soft_wrap=True)


def _usage_error(exc: typer.TyperException) -> int:
    """Print a usage error (typer >= 0.29 raises its click's errors as TyperException) as one line; exit 2."""
    if exc.__class__.__name__ == "NoArgsIsHelpError":  # a group called bare: its help is the message
        typer.echo(exc.format_message())
        return int(ExitCode.BAD_INPUT)
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "edgeq"
    first = (exc.format_message().strip().splitlines() or [exc.__class__.__name__])[0]
    _say(f"{first} (see `{command} --help`)")
    return int(ExitCode.BAD_INPUT)


def run(argv: Sequence[str]) -> int:
    """Run the command line ``argv`` (without the program name); the process exit code."""
    try:
        code = app(args=list(argv), prog_name="edgeq", standalone_mode=False)  # typer.Exit's code is returned
    except EdgeqError as exc:
        _say(exc.message)
        return int(exc.exit_code)
    except typer.TyperException as exc:
        return _usage_error(exc)
    except (KeyboardInterrupt, typer.Abort):
        _say("interrupted")
        return INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (`edgeq targets | head -1`)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (nothing more may reach the closed pipe at exit)
        return int(ExitCode.OK)
    except Exception as exc:  # noqa: BLE001 (the boundary: nothing unexpected escapes as a traceback)
        summary = clean(f"{exc.__class__.__name__}: {exc}".splitlines()[0] if str(exc) else exc.__class__.__name__)
        try:
            where = f"traceback saved to {save_traceback(exc, argv)}"
        except OSError as failure:
            where = f"the traceback could not be saved: {failure.strerror or failure}"
        _say(f"internal error, please report: {summary[:200]} ({where})")
        return int(ExitCode.INTERNAL)
    return code if isinstance(code, int) else int(ExitCode.OK)
