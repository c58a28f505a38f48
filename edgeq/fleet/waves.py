"""Waves and failure budgets: how a fleet is split into stages and how many failures a stage may have.

A wave spec such as ``1,25%,100%`` lists cumulative stages: the first wave reaches 1 device, the
second reaches 25% of the fleet (rounded up), the third all of it. Stages that add no device are
dropped, and any device a spec does not reach forms a last wave, so no device is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeq.errors import InputError

DEFAULT_WAVES = "1,25%,100%"


@dataclass(frozen=True)
class Amount:
    """A count or a percentage, as written on the command line (``3`` or ``25%``)."""

    value: float
    percent: bool

    @classmethod
    def parse(cls, text: str, what: str) -> Amount:
        raw = text.strip()
        number = raw[:-1] if raw.endswith("%") else raw
        try:
            value = float(number)
        except ValueError:
            raise InputError(f"{what}: expected a count like 2 or a percentage like 25%, found {text!r}") from None
        if value < 0 or (raw.endswith("%") and value > 100) or (not raw.endswith("%") and value != int(value)):
            raise InputError(f"{what}: expected a whole count >= 0 or a percentage 0..100%, found {text!r}")
        return cls(value, raw.endswith("%"))

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{int(self.value)}"


def parse_waves(spec: str) -> list[Amount]:
    """The stages of a wave spec (``1,25%,100%``); each must reach at least as far as the one before."""
    stages = [Amount.parse(part, "--waves") for part in spec.split(",") if part.strip()]
    if not stages:
        raise InputError(f"--waves: expected stages like {DEFAULT_WAVES}, found {spec!r}")
    if any(not s.percent and s.value == 0 for s in stages):
        raise InputError(f"--waves: a stage of 0 devices reaches nobody, found {spec!r}")
    return stages


def split_waves(count: int, stages: list[Amount]) -> list[int]:
    """Wave sizes for a fleet of ``count`` devices: cumulative stages, empty ones dropped, rest last."""
    sizes: list[int] = []
    reached = 0
    for stage in stages:
        target = math.ceil(count * stage.value / 100) if stage.percent else int(stage.value)
        target = min(max(target, reached), count)
        if target > reached:
            sizes.append(target - reached)
            reached = target
    if reached < count:
        sizes.append(count - reached)
    return sizes


def failure_allowance(budget: Amount, wave_size: int) -> int:
    """How many devices of a wave may fail before the wave fails: N, or P% of the wave rounded down."""
    if budget.percent:
        return math.floor(wave_size * budget.value / 100 + 1e-9)
    return int(budget.value)
