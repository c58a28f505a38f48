"""Wave specs and failure budgets."""

from __future__ import annotations

import pytest

from edgeq.errors import InputError
from edgeq.fleet.waves import DEFAULT_WAVES, Amount, failure_allowance, parse_waves, split_waves


@pytest.mark.parametrize(
    ("count", "spec", "sizes"),
    [
        (8, DEFAULT_WAVES, [1, 1, 6]),
        (20, DEFAULT_WAVES, [1, 4, 15]),
        (1, DEFAULT_WAVES, [1]),
        (3, DEFAULT_WAVES, [1, 2]),
        (8, "2", [2, 6]),  # what a spec does not reach forms a last wave
        (8, "100%", [8]),
        (8, "1,1,50%", [1, 3, 4]),  # a stage that adds nobody is dropped
        (4, "10", [4]),
    ],
)
def test_split_waves(count: int, spec: str, sizes: list[int]) -> None:
    assert split_waves(count, parse_waves(spec)) == sizes
    assert sum(sizes) == count


@pytest.mark.parametrize("spec", ["", "a,50%", "1,150%", "0", "1.5", "-1"])
def test_bad_wave_specs(spec: str) -> None:
    with pytest.raises(InputError, match="--waves"):
        parse_waves(spec)


def test_failure_allowance() -> None:
    assert failure_allowance(Amount.parse("0", "x"), 6) == 0
    assert failure_allowance(Amount.parse("2", "x"), 6) == 2
    assert failure_allowance(Amount.parse("25%", "x"), 6) == 1
    assert failure_allowance(Amount.parse("25%", "x"), 4) == 1
    assert failure_allowance(Amount.parse("25%", "x"), 3) == 0
    assert str(Amount.parse("25%", "x")) == "25%" and str(Amount.parse("3", "x")) == "3"
