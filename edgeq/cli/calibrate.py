"""`edgeq calibrate`: GPU-free calibration on the host"""

from __future__ import annotations

from edgeq.cli.app import app
from edgeq.errors import InputError


@app.command("calibrate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def calibrate() -> None:
    """GPU-free calibration on the host (not built yet)."""
    raise InputError("`edgeq calibrate` is not built yet")

