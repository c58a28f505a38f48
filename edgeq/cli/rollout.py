"""`edgeq rollout`: fleet rollouts in waves, with gates, rollback and resume"""

from __future__ import annotations

from edgeq.cli.app import app
from edgeq.errors import InputError


@app.command("rollout", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def rollout() -> None:
    """fleet rollouts in waves, with gates, rollback and resume (not built yet)."""
    raise InputError("`edgeq rollout` is not built yet")

