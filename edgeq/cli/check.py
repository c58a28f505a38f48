"""`edgeq check`: per-layer INT8 preflight for a target"""

from __future__ import annotations

from edgeq.cli.app import app
from edgeq.errors import InputError


@app.command("check", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def check() -> None:
    """per-layer INT8 preflight for a target (not built yet)."""
    raise InputError("`edgeq check` is not built yet")

