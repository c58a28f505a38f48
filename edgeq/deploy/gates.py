"""Pass/fail gates from the recipe's budget: accuracy drop and p99 latency, measured on the device."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgeq.deploy.evaluation import Evaluation
from edgeq.device.report import BenchReport
from edgeq.recipe import Recipe


@dataclass(frozen=True)
class GateResult:
    """One gate: what was measured against which limit."""

    name: str
    passed: bool
    value: float
    limit: float
    unit: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        sign = "<=" if self.passed else ">"
        return f"{self.name}: {self.value:.3g} {self.unit} {sign} {self.limit:.3g} {self.unit}"


def check_gates(recipe: Recipe, evaluation: Evaluation, bench: BenchReport) -> list[GateResult]:
    """The recipe's gates: accuracy drop in points (always), INT8 p99 latency (when the recipe sets one)."""
    gates = [GateResult("accuracy drop", evaluation.drop <= recipe.budget.accuracy_drop, evaluation.drop,
                        recipe.budget.accuracy_drop, "points")]
    if recipe.budget.latency_p99_ms is not None:
        p99 = bench.int8.p99_ms
        gates.append(GateResult("p99 latency", p99 <= recipe.budget.latency_p99_ms, p99, recipe.budget.latency_p99_ms, "ms"))
    return gates
