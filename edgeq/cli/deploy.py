"""`edgeq deploy`: push to a device, build the INT8 engine there, measure, report"""

from __future__ import annotations

from edgeq.cli.app import app
from edgeq.errors import InputError


@app.command("deploy", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def deploy() -> None:
    """push to a device, build the INT8 engine there, measure, report (not built yet)."""
    raise InputError("`edgeq deploy` is not built yet")

