"""``StrEnum`` for Python 3.10 (``enum.StrEnum`` arrived in 3.11): members are their string values in JSON,
comparisons, ``str()`` and f-strings."""

from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """An enum whose members are strings and print as their value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
