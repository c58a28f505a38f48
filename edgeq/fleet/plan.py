"""What a rollout will do, before it touches any device: hosts, their targets, waves, budgets, gates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeq import targets
from edgeq.errors import InputError
from edgeq.fleet.waves import (
    DEFAULT_WAVES,
    Amount,
    failure_allowance,
    parse_waves,
    split_waves,
)
from edgeq.hosts import Host, host_name
from edgeq.recipe import Recipe


@dataclass(frozen=True)
class RolloutOptions:
    """The command line's choices."""

    waves: str = DEFAULT_WAVES
    concurrency: int = 4
    max_failures: str = "0"
    build_each: bool = False
    target: str | None = None  # for hosts whose inventory entry names none
    timeout: float | None = None  # seconds per device wait (connect, silence); None keeps the remote layer's
    keep: int | None = 1  # engines kept after a verified switch besides current and previous (None: no gc)
    fit_budget: bool | None = None  # --fit-budget / --no-fit-budget (None: the recipe's calibration.fit_budget)


@dataclass(frozen=True)
class RolloutPlan:
    """Hosts in wave order with their target profiles; nothing is calibrated or contacted yet."""

    recipe: Recipe
    inventory: Path | None
    hosts: list[Host]
    targets: dict[str, str]  # device name -> target profile name
    waves: list[list[str]]
    allowances: list[int]  # device failures each wave may have
    options: RolloutOptions
    gates: list[str] = field(default_factory=list)  # in words, for the plan view

    def describe(self) -> dict[str, object]:
        """The plan as JSON-ready data (``--dry-run --json``)."""
        return {
            "recipe": str(self.recipe.source),
            "inventory": str(self.inventory) if self.inventory else None,
            "waves": [
                {"devices": names, "targets": {n: self.targets[n] for n in names}, "failures_allowed": allowed}
                for names, allowed in zip(self.waves, self.allowances, strict=True)
            ],
            "concurrency": self.options.concurrency,
            "build_each": self.options.build_each,
            "gates": self.gates,
        }


def plan_rollout(recipe: Recipe, hosts: list[Host], options: RolloutOptions, inventory: Path | None = None) -> RolloutPlan:
    """Split ``hosts`` into waves and fix each one's target; every input problem is found here."""
    if not hosts:
        raise InputError("no devices to roll out to: give --inventory, or devices in the recipe")
    if options.concurrency < 1:
        raise InputError(f"--concurrency: expected at least 1, found {options.concurrency}")
    budget = Amount.parse(options.max_failures, "--max-failures")
    chosen: dict[str, str] = {}
    for host in hosts:
        name = host.target or options.target
        if name is None:
            raise InputError(f"host {host_name(host)!r}: no target profile: set 'target' for it in the inventory, or pass --target")
        chosen[host_name(host)] = targets.resolve(name).name
    sizes = split_waves(len(hosts), parse_waves(options.waves))
    names = [host_name(h) for h in hosts]
    waves, start = [], 0
    for size in sizes:
        waves.append(names[start : start + size])
        start += size
    gates = [f"accuracy drop <= {recipe.budget.accuracy_drop:g} points vs FP32, on each device"]
    if recipe.budget.latency_p99_ms is not None:
        gates.append(f"p99 latency <= {recipe.budget.latency_p99_ms:g} ms, on each device")
    gates.append("smoke test passes, before and after the switch")
    gates.append(f"device failures per wave <= {budget}")
    return RolloutPlan(
        recipe=recipe,
        inventory=inventory,
        hosts=list(hosts),
        targets=chosen,
        waves=waves,
        allowances=[failure_allowance(budget, len(w)) for w in waves],
        options=options,
        gates=gates,
    )
