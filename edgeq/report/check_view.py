"""Rich renderables for an `edgeq check` report: gates, counts and shares, and the nodes grouped by verdict."""

from __future__ import annotations

from collections import Counter

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from edgeq.check.report import VERDICTS, CheckReport, NodeResult, Reason

VERDICT_STYLE = {"int8": "green", "int8-passthrough": "cyan", "fallback": "yellow", "unsupported": "bold red",
                 "dla": "green", "gpu-fallback": "yellow"}
GATE_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "n/a": "dim"}


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _macs(value: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return str(value)


def summary_table(report: CheckReport) -> Table:
    """Model, target, rule files, mode, and the MAC shares a user decides on."""
    table = Table(title=f"edgeq check: {report.model} on {report.target}", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("engine", f"{report.engine} (rules: {', '.join(report.rule_files)})")
    table.add_row("opset / INT8 mode", f"{report.opset} / {report.quantization}" + ("" if report.int8 else " (INT8 not requested)"))
    shares = report.shares
    unknown = f"; {shares.unknown_mac_nodes} node(s) with unknown shapes not counted" if shares.unknown_mac_nodes else ""
    table.add_row("MACs (batch 1)", _macs(shares.total_macs) + unknown)
    lower = " of the known MACs; {} MAC node(s) of unknown size miss {}: the true share is lower"
    table.add_row("INT8 share of MACs", Text(_share(shares.int8), style="bold")
                  + (lower.format(shares.unknown_not_int8, "INT8") if shares.unknown_not_int8 else ""))
    if report.dla_core is not None:
        table.add_row(f"DLA share of MACs (core {report.dla_core})", Text(_share(shares.dla), style="bold")
                      + (lower.format(shares.unknown_not_dla, "the DLA") if shares.unknown_not_dla else ""))
    unavailable = next((g for g in report.gates if g.id == "dla_available" and g.status != "pass"), None)
    if unavailable is not None:
        table.add_row("DLA", Text(f"unavailable, GPU only: {unavailable.message}", style="yellow"))
    if report.disputed:
        table.add_row("disputed DLA verdicts", Text(f"{len(report.disputed)} node(s) rest on a rule NVIDIA's sources disagree on", style="yellow"))
    if report.dynamic_inputs:
        table.add_row("dynamic inputs", ", ".join(f"{k}: {v}" for k, v in report.dynamic_inputs.items()))
    return table


def gates_table(report: CheckReport) -> Table:
    table = Table(title="whole-model gates", title_justify="left")
    for column in ("gate", "status", "finding"):
        table.add_column(column, overflow="fold")
    for gate in report.gates:
        status = gate.status + (" (blocker)" if gate.status == "fail" and gate.blocking else "")
        table.add_row(gate.title, Text(status, style=GATE_STYLE[gate.status]), gate.message)
    return table


def counts_table(report: CheckReport) -> Table:
    """Nodes and MACs per verdict, with the op types behind each."""
    table = Table(title="verdicts", title_justify="left")
    for column in ("verdict", "nodes", "MACs", "op types"):
        table.add_column(column, overflow="fold")
    groups: list[tuple[str, list[NodeResult]]] = [(v, [n for n in report.nodes if n.verdict == v]) for v in VERDICTS]
    if report.dla_core is not None:
        groups += [(v, [n for n in report.nodes if n.dla == v]) for v in ("dla", "gpu-fallback")]
    total = report.shares.total_macs
    for verdict, nodes in groups:
        macs = sum(n.macs or 0 for n in nodes)
        ops = ", ".join(f"{op} {count}" for op, count in Counter(n.op for n in nodes).most_common())
        where = "DLA: " if verdict in ("dla", "gpu-fallback") else ""
        share = f" ({_share(macs / total)})" if total else ""
        table.add_row(Text(where + verdict, style=VERDICT_STYLE[verdict]), str(len(nodes)), _macs(macs) + share, ops or "-")
    return table


def _names(nodes: list[NodeResult], limit: int = 3) -> str:
    shown = ", ".join(n.name for n in nodes[:limit])
    return shown + (f" +{len(nodes) - limit} more" if len(nodes) > limit else "")


def nodes_table(report: CheckReport, *, all_nodes: bool = False) -> Table:
    """Nodes that need attention (unsupported, fallback, DLA gpu-fallback or a DLA verdict on a disputed rule), by verdict, op and rule.

    A group shows its first node's reasons. With ``all_nodes`` every node gets its own row, INT8 ones included.
    """
    table = Table(title="nodes by verdict" + ("" if all_nodes else " (INT8 and pass-through nodes: --all)"), title_justify="left")
    for column in ("verdict", "op", "nodes", "reason"):
        table.add_column(column, overflow="fold")
    rows: dict[tuple[str, str, tuple[str, ...]], list[tuple[NodeResult, list[Reason]]]] = {}
    for verdict in VERDICTS if all_nodes else ("unsupported", "fallback"):
        for node in (n for n in report.nodes if n.verdict == verdict):
            key = (node.name,) if all_nodes else tuple(r.rule for r in node.reasons)
            rows.setdefault((verdict, node.op, key), []).append((node, node.reasons))
    for dla in ("dla", "gpu-fallback"):
        for node in (n for n in report.nodes if n.dla == dla and (all_nodes or dla == "gpu-fallback" or n.dla_disputed)):
            key = (node.name,) if all_nodes else (*(r.rule for r in node.dla_reasons), node.dla_disputed or "")
            reasons = node.dla_reasons + ([Reason(rule="dla.disputed", message=f"disputed: {node.dla_disputed}", source="")] if node.dla_disputed else [])
            rows.setdefault((f"DLA: {dla}", node.op, key), []).append((node, reasons))
    for (label, op, _), members in rows.items():
        reasons = members[0][1]
        text = "; ".join(r.message for r in reasons) or "-"
        if len(members) > 1:
            text += f" (first of {len(members)})"
        table.add_row(Text(label, style=VERDICT_STYLE[label.removeprefix("DLA: ")]), op,
                      _names([node for node, _ in members]), text)
    return table


def check_view(report: CheckReport, *, all_nodes: bool = False) -> RenderableType:
    """The whole report for people."""
    verdict = Text("will build" if report.ok else f"will not build: {len(report.blockers)} blocker(s)",
                   style="bold green" if report.ok else "bold red")
    return Group(summary_table(report), gates_table(report), counts_table(report), nodes_table(report, all_nodes=all_nodes), verdict)
