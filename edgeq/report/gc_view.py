"""Rich renderable for `edgeq gc`: what each device freed."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from edgeq.deploy.wire import GcReport
from edgeq.report.safe_text import clean, plain


def gc_view(rows: Sequence[tuple[str, GcReport | None, str | None]]) -> Table:
    """One row per device: engines removed and kept, blobs removed, leftovers swept, space freed, or its error."""
    table = Table(title="device clean-up", title_justify="left")
    for column in ("device", "engines removed", "engines kept", "blobs removed", "leftovers swept", "freed", "error"):
        table.add_column(column, overflow="fold")
    for name, report, error in rows:
        if report is None:
            table.add_row(plain(name), "-", "-", "-", "-", "-", Text(clean(error or "no answer"), style="red"))
            continue
        table.add_row(
            plain(name),
            plain(", ".join(report.removed) or "none"),
            plain(", ".join(report.kept) or "none"),
            str(len(report.blobs_removed)),
            str(len(report.swept)),
            f"{report.bytes_freed / 1e6:.1f} MB",
            "",
        )
    return table
