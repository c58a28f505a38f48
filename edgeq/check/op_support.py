"""Which ONNX ops each TensorRT ONNX parser takes: edgeq/check/data/onnx-tensorrt-op-support.csv.

The CSV (shared/docs/onnx-tensorrt-op-support.csv, parsed from onnx/onnx-tensorrt docs/operators.md at 8.5-GA,
8.6-GA and 10.1-GA, plus a trt8.2 column parsed from 8.2-GA's operators.md and checked against that branch's
builtin_op_importers.cpp) has, per parser column, ``Y``, ``N`` or ``absent`` (op not in that version's table), the
supported types and the restrictions.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

CSV_NAME = "onnx-tensorrt-op-support.csv"


@dataclass(frozen=True)
class OpSupport:
    """One op in one parser version."""

    supported: bool
    listed: bool
    types: str
    restrictions: str


@cache
def table(column: str) -> dict[str, OpSupport]:
    """The op-support entries of parser ``column`` (e.g. ``trt8.5``), by ONNX op type."""
    text = (resources.files("edgeq.check") / "data" / CSV_NAME).read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    if f"{column}_supported" not in rows[0]:
        raise KeyError(f"{CSV_NAME} has no column '{column}_supported'")
    return {
        row["onnx_op"]: OpSupport(
            supported=row[f"{column}_supported"] == "Y",
            listed=row[f"{column}_supported"] != "absent",
            types=row[f"{column}_types"],
            restrictions=row[f"{column}_restrictions"],
        )
        for row in rows
    }
