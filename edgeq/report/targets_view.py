"""Rich renderables for target profiles."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text

from edgeq.targets import Target


def targets_table(targets: Iterable[Target]) -> Table:
    """One row per profile."""
    table = Table(title="edgeq targets", title_justify="left")
    for column in ("name", "aliases", "module", "JetPack", "TensorRT", "CC", "DLA", "INT8"):
        table.add_column(column)
    for t in targets:
        table.add_row(
            t.name,
            ", ".join(t.aliases),
            t.module,
            t.jetpack or "-",
            t.tensorrt or "-",
            t.compute_capability or "-",
            str(t.dla_cores),
            Text("yes", style="green") if t.int8 else Text("no", style="red"),
        )
    return table


def target_detail(target: Target) -> Table:
    """Every field of one profile, with its source."""
    table = Table(title=target.title, title_justify="left", show_header=True)
    table.add_column("field")
    table.add_column("value")
    table.add_column("source", overflow="fold")
    for field, value in target.model_dump(mode="json", exclude={"sources", "title"}).items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else ("-" if value is None else str(value))
        table.add_row(field, shown, target.sources.get(field, ""))
    return table
