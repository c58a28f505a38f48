"""`edgeq smoke`: a short on-device test that the installed engine answers like the FP32 model."""

from __future__ import annotations

from edgeq.cli.app import app
from edgeq.errors import InputError


@app.command("smoke", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def smoke() -> None:
    """A short on-device test of the installed engine against the FP32 model (not built yet)."""
    raise InputError("`edgeq smoke` is not built yet")
