"""TensorRT version numbers: parsing and the NV_TENSORRT_VERSION integer (trt-jetson-facts.md §4.2, §6.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .errors import AgentError

_DOTTED = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_LOG_TAG = re.compile(r"\[TensorRT v(\d+)\]")


@dataclass(frozen=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        """From ``10.3.0.30``, ``8.5.2-1+cuda11.4`` (dpkg) or ``10.3``."""
        match = _DOTTED.search(text)
        if not match:
            raise AgentError(AgentError.INVALID_INPUT, f"not a TensorRT version: {text!r}")
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))

    @classmethod
    def from_nv_int(cls, value: int) -> TrtVersion:
        """From NV_TENSORRT_VERSION: major*1000+minor*100+patch up to 8.x, major*10000+minor*100+patch from 10.0."""
        if value >= 100000:
            return cls(value // 10000, value // 100 % 100, value % 100)
        return cls(value // 1000, value // 100 % 10, value % 100)

    @classmethod
    def from_log(cls, text: str) -> Optional[TrtVersion]:
        """From trtexec's ``&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # ...`` line."""
        match = _LOG_TAG.search(text)
        return cls.from_nv_int(int(match.group(1))) if match else None

    @property
    def nv_int(self) -> int:
        if self.major >= 10:
            return self.major * 10000 + self.minor * 100 + self.patch
        return self.major * 1000 + self.minor * 100 + self.patch

    def at_least(self, major: int, minor: int = 0) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"
