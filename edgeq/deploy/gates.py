"""Pass/fail gates, measured on the device: the recipe's accuracy drop and p99 latency, and the smoke test."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from edgeq.deploy.evaluation import Evaluation
from edgeq.deploy.wire import BenchReport, SmokeReport
from edgeq.recipe import Recipe


class GateResult(BaseModel):
    """One gate: what was measured against which limit (at most ``limit``, or at least it)."""

    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    value: float
    limit: float
    unit: str
    at_least: bool = False
    note: str | None = None

    def describe(self) -> str:
        good, bad = (">=", "<") if self.at_least else ("<=", ">")
        sign = good if self.passed else bad
        note = f" ({self.note})" if self.note else ""
        return f"{self.name}: {self.value:.3g} {self.unit} {sign} {self.limit:.3g} {self.unit}{note}"


def check_gates(recipe: Recipe, evaluation: Evaluation, bench: BenchReport, smoke: SmokeReport) -> list[GateResult]:
    """The gates: accuracy drop in points (always), INT8 p99 latency (when the recipe sets one), and the
    smoke test of the new engine (top-1 agreement and cosine with the host's FP32 outputs; cosine alone where
    the outputs are not class scores)."""
    gates = [GateResult(name="accuracy drop", passed=evaluation.drop <= recipe.budget.accuracy_drop, value=evaluation.drop,
                        limit=recipe.budget.accuracy_drop, unit="points")]
    if recipe.budget.latency_p99_ms is not None:
        p99 = bench.int8.p99_ms
        gates.append(GateResult(name="p99 latency", passed=p99 <= recipe.budget.latency_p99_ms, value=p99,
                                limit=recipe.budget.latency_p99_ms, unit="ms"))
    comparison = smoke.comparison
    if smoke.min_agreement > 0:
        gates.append(GateResult(name="smoke", passed=smoke.passed, value=comparison.top1_agreement,
                                limit=smoke.min_agreement, unit="top-1 agreement", at_least=True,
                                note=f"cosine {comparison.cosine:.4f}, at least {smoke.min_cosine:g}"))
    else:  # outputs that are not class scores: cosine alone decides
        gates.append(GateResult(name="smoke", passed=smoke.passed, value=comparison.cosine, limit=smoke.min_cosine,
                                unit="cosine", at_least=True))
    return gates
