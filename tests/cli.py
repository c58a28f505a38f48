"""Running the real `edgeq` command line in a subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_edgeq(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> CliResult:
    """Run `python -m edgeq ARGS` and return its exit code and output."""
    proc = subprocess.run(
        [sys.executable, "-m", "edgeq", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**__import__("os").environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
