"""Running the `edgeq` command line as a user would: in this process, inside typer's CliRunner isolation (the
fast default: the real ``main()`` with its error boundary and exit codes, stdout and stderr apart), or as a
``python -m edgeq`` subprocess where the process itself is under test.

(``CliRunner.invoke`` would call the Typer app directly, around the error boundary; so the runner here
provides the isolation and calls the boundary, :func:`edgeq.cli.run`.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_edgeq(*args: str | Path) -> CliResult:
    """`edgeq ARGS` in this process: its exit code and output."""
    from edgeq.cli import run

    with CliRunner().isolation(env=ENV) as (stdout, stderr, _):
        try:
            code = run([str(a) for a in args])
        except SystemExit as exc:  # what the commands themselves raise (typer.Exit is returned by run())
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        return CliResult(code, stdout.getvalue().decode(), stderr.getvalue().decode())


def run_edgeq_process(*args: str | Path, timeout: float = 600) -> CliResult:
    """`python -m edgeq ARGS` as a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "edgeq", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **ENV})
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
