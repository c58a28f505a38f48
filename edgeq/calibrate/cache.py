"""The TensorRT calibration cache: writing it for a target's exact TensorRT, and reading any such file.

Format (trt-jetson-facts.md section 4): a header ``TRT-<NV_TENSORRT_VERSION>-<algorithm>``, then one
``<tensor name>: <8 lower-case hex digits>`` line per tensor, the digits being the big-endian IEEE-754
float32 bits of scale = amax / 127. The version number is major*1000+minor*100+patch up to TensorRT 8
and major*10000+minor*100+patch from 10 on (``NvInferRuntimeBase.h``). trtexec ``--calib`` always
reads with IInt8EntropyCalibrator2, so edgeq writes ``EntropyCalibration2`` whatever the range method.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgeq.errors import InputError

ALGORITHM = "EntropyCalibration2"


def header_version(version: tuple[int, int, int]) -> int:
    """NV_TENSORRT_VERSION for (major, minor, patch)."""
    major, minor, patch = version
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def encode_scale(scale: float) -> str:
    """The 8 hex digits of a positive, finite float32 scale."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"a calibration scale must be positive and finite, got {scale}")
    return struct.pack(">f", scale).hex()


def decode_scale(digits: str) -> float:
    return struct.unpack(">f", bytes.fromhex(digits.rjust(8, "0")))[0]


@dataclass
class CalibrationCache:
    """A parsed cache: header fields and the scale of each tensor (amax = 127 x scale)."""

    version: int
    algorithm: str
    scales: dict[str, float] = field(default_factory=dict)

    @property
    def header(self) -> str:
        return f"TRT-{self.version}-{self.algorithm}"

    def amax(self) -> dict[str, float]:
        return {name: scale * 127.0 for name, scale in self.scales.items()}

    def to_text(self) -> str:
        lines = [self.header] + [f"{name}: {encode_scale(scale)}" for name, scale in self.scales.items()]
        return "\n".join(lines) + "\n"


def build_cache(amax: Mapping[str, float], version: tuple[int, int, int]) -> CalibrationCache:
    """A cache for a TensorRT ``version`` from per-tensor amax values (in the given order)."""
    scales = {}
    for name, value in amax.items():
        if "\n" in name or not name:
            raise ValueError(f"tensor name {name!r} cannot be written to a calibration cache")
        scales[name] = float(struct.unpack(">f", struct.pack(">f", value / 127.0))[0])
    return CalibrationCache(version=header_version(version), algorithm=ALGORITHM, scales=scales)


def parse_cache(text: str, source: str = "calibration cache") -> CalibrationCache:
    """Read a cache written by TensorRT, Polygraphy, TAO, ModelOpt or edgeq."""
    lines = [line.rstrip("\r") for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        found = lines[0][:40] if lines else "an empty file"
        raise InputError(f"{source}: expected a 'TRT-<version>-<algorithm>' header, found {found!r}")
    parts = lines[0].split("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2]:
        raise InputError(f"{source}: malformed header {lines[0]!r}; expected e.g. 'TRT-100300-EntropyCalibration2'")
    cache = CalibrationCache(version=int(parts[1]), algorithm=parts[2])
    for number, line in enumerate(lines[1:], start=2):
        name, sep, digits = line.rpartition(":")
        digits = digits.strip()
        if not sep or not name or not digits or len(digits) > 8 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise InputError(f"{source}: line {number}: expected '<tensor>: <8 hex digits>', found {line!r}")
        cache.scales[name] = decode_scale(digits)
    return cache
