"""Rich renderables for target profiles."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text

from edgeq.device.int8_arith import describe
from edgeq.device.report import Int8Arithmetic
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


def target_detail(target: Target, arithmetic: Int8Arithmetic | None = None) -> Table:
    """Every field of one profile, with its source; for this machine, also how it sums int8 products."""
    table = Table(title=target.title, title_justify="left", show_header=True)
    table.add_column("field")
    table.add_column("value")
    table.add_column("source", overflow="fold")
    for field, value in target.model_dump(mode="json", exclude={"sources", "title"}).items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else ("-" if value is None else str(value))
        table.add_row(field, shown, target.sources.get(field, ""))
    if arithmetic is not None:
        probe = "edgeq.device.int8_arith (ONNX Runtime on inputs whose pair sums overflow 16 bits, vs numpy int32)"
        table.add_row("int8_arithmetic", describe(arithmetic), probe)
        for check in [*arithmetic.checks, arithmetic.reduced_range]:
            outcome = "exact" if check.exact else f"off by up to {check.max_error}"
            if check.matches_saturation and not check.exact:
                outcome += " (= 16-bit saturating pair sums)"
            table.add_row("  probe", f"{check.kernel}: {outcome}", "")
        table.add_row("  cpu_flags", ", ".join(arithmetic.cpu_flags) or "-", "/proc/cpuinfo (for information)")
    return table
