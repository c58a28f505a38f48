"""The TensorRT calibration cache: writing it for a target's exact TensorRT, and reading any such file.

Format (trt-jetson-facts.md section 4, pinned on caches TensorRT 7.2 to 10.13 wrote: tests/fixtures/trt/SOURCES.md):
a header ``TRT-<NV_TENSORRT_VERSION>-<algorithm>``, then one ``<tensor name>: <hex>`` line per tensor, the hex
being the big-endian IEEE-754 float32 bits of scale = amax / 127. TensorRT writes the bits without leading zeros
(a zero scale is ``0``); edgeq writes all 8 digits, which TensorRT reads the same. The version number is
major*1000+minor*100+patch up to TensorRT 8 and major*10000+minor*100+patch from 10 on (``NvInferRuntimeBase.h``).
trtexec ``--calib`` always reads with IInt8EntropyCalibrator2, so edgeq writes ``EntropyCalibration2`` whatever the
range method.

Constants: from TensorRT 10 the ONNX parser turns an initializer read by anything but a convolution's weights into
a constant layer whose output is named ``<initializer>_output``, and TensorRT's own calibration writes it with the
constant's largest magnitude as amax (e.g. ``/model.10/m/m.0/attn/Constant_1_output_0_output`` with 1/sqrt(32),
GELU's ``Constant_output_0_output`` with sqrt(2) in the 10.3 and 10.10 fixtures). ``constant_ranges`` writes those
entries. Tensors the parser makes itself (``ONNXTRT_Broadcast_N_output``, ``ONNXTRT_flattenTensor_N_output``, and in
8.x ``(Unnamed Layer* N) [Constant]_output``) carry a counter no host can predict: layers reading them fall back
("Missing scale"), which ``edgeq check`` warns about for MatMul models in implicit mode.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.errors import InputError
from edgeq.graph import GraphIndex

ALGORITHM = "EntropyCalibration2"
ALGORITHMS = ("EntropyCalibration2", "MinMaxCalibration", "EntropyCalibration", "LegacyCalibration")
KERNEL_OPS = ("Conv", "ConvTranspose")  # their weights and bias become layer weights, not constant tensors


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
        """The file: 8 hex digits per scale (a read cache's zero or infinite scales are written back as they were)."""
        lines = [self.header] + [f"{name}: {struct.pack('>f', scale).hex()}" for name, scale in self.scales.items()]
        return "\n".join(lines) + "\n"


def build_cache(amax: Mapping[str, float], version: tuple[int, int, int], algorithm: str = ALGORITHM) -> CalibrationCache:
    """A cache for a TensorRT ``version`` from per-tensor amax values (in the given order); each must be positive."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"calibration algorithm {algorithm!r}: expected one of {', '.join(ALGORITHMS)}")
    scales = {}
    for name, value in amax.items():
        if "\n" in name or not name:
            raise ValueError(f"tensor name {name!r} cannot be written to a calibration cache")
        encode_scale(value / 127.0)  # refuses zero, negative and non-finite ranges with the value in the message
        scales[name] = float(struct.unpack(">f", struct.pack(">f", value / 127.0))[0])
    return CalibrationCache(version=header_version(version), algorithm=algorithm, scales=scales)


def constant_ranges(model: onnx.ModelProto, version: tuple[int, int, int]) -> dict[str, float]:
    """``<initializer>_output`` -> max |value| for the constant layers TensorRT 10+ makes from ``model``'s initializers.

    Empty before TensorRT 10, whose constant layers are ``(Unnamed Layer* N) [Constant]_output``. Initializers read
    only as Conv/ConvTranspose weights or bias, integer ones, and all-zero ones (no positive scale) are left out.
    """
    if version[0] < 10:
        return {}
    index = GraphIndex(model)
    found = {}
    for name, init in index.initializers.items():
        uses = {"kernel" if node.op_type in KERNEL_OPS and position > 0 else node.op_type for node, position in index.consumers(name)}
        if not uses - {"kernel"} or init.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            continue
        values = numpy_helper.to_array(init)
        amax = float(np.abs(values.astype(np.float32)).max()) if values.size else 0.0
        if math.isfinite(amax) and amax > 0:
            found[f"{name}_output"] = amax
    return found


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
