"""What a TensorRT version (and GPU) can build, decided once for trtexec and the Python API alike.

Follows trt-jetson-facts.md §1.1 (no INT8 on CC 5.3/6.2), §3.1-3.4 (implicit INT8 8.x-10.x only,
removed in 11; Q/DQ needs the INT8 flag on 8.x, --stronglyTyped or INT8+FP16 on 10.x, no flags on 11;
TRT 8.x DLA rejects Q/DQ; DLA on TRT 11 only from 11.4.1), §4.5 (missing/absent cache traps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .errors import AgentError
from .trt_version import TrtVersion

NO_INT8_COMPUTE_CAPABILITIES = ("5.3", "6.2")


@dataclass
class TrtBuildSpec:
    """One TensorRT build: which ONNX file, into which engine, with which settings."""

    onnx: str
    engine: str
    precision: str
    quantization: str = "explicit"
    cache: Optional[str] = None
    fp16_fallback: bool = False
    dla_core: Optional[int] = None
    gpu_fallback: bool = False
    workspace_mb: Optional[int] = None
    shapes: Dict[str, List[int]] = field(default_factory=dict)
    profiles: Dict[str, List[List[int]]] = field(default_factory=dict)  # input -> [min, opt, max]
    timing_cache: Optional[str] = None
    layer_info: Optional[str] = None


@dataclass
class PrecisionPlan:
    """Builder precision settings: INT8/FP16 flags, strong typing, and the calibration cache to read."""

    int8: bool = False
    fp16: bool = False
    strongly_typed: bool = False
    calibration_cache: Optional[str] = None


def _refuse(message: str) -> AgentError:
    return AgentError(AgentError.UNSUPPORTED, message)


def plan_precision(spec: TrtBuildSpec, version: TrtVersion, compute_capability: Optional[str]) -> PrecisionPlan:
    """The precision plan for ``spec``, or an AgentError saying why this TensorRT/GPU cannot do it."""
    if spec.dla_core is not None:
        if spec.precision == "fp32":
            raise _refuse("DLA runs FP16 and INT8 only, not FP32")
        if version.major >= 11 and (version.minor, version.patch) < (4, 1):
            raise _refuse("TensorRT {} has no DLA on Jetson (back in 11.4.1, AGX Orin only)".format(version))
    if spec.precision == "fp32":
        return PrecisionPlan()
    if spec.precision == "fp16":
        if version.major >= 11:
            raise _refuse("TensorRT 11 has no FP16 flag: bake FP16 into the ONNX model (ModelOpt AutoCast)")
        return PrecisionPlan(fp16=True)
    if compute_capability in NO_INT8_COMPUTE_CAPABILITIES:
        raise _refuse("no INT8 on compute capability {} (Nano/TX1/TX2): use FP16".format(compute_capability))
    if spec.fp16_fallback and version.major >= 11:
        raise _refuse("TensorRT 11 takes no precision flags: bake the FP16 fallback into the Q/DQ model")
    if spec.quantization == "implicit":
        if version.major >= 11:
            raise _refuse("implicit INT8 (calibration cache) was removed in TensorRT 11: use the Q/DQ model")
        if spec.cache is None:
            raise _refuse("implicit INT8 needs --cache: without it trtexec uses dummy ranges (a perf-only engine)")
        if not os.path.isfile(spec.cache):
            raise AgentError(AgentError.NOT_FOUND, "calibration cache not found: {} (trtexec would silently "
                                                   "calibrate on random data)".format(spec.cache))
        return PrecisionPlan(int8=True, fp16=spec.fp16_fallback, calibration_cache=spec.cache)
    if version.major >= 11:
        return PrecisionPlan(strongly_typed=True)
    if version.major == 10 and not spec.fp16_fallback and spec.dla_core is None:
        return PrecisionPlan(strongly_typed=True)
    if version.major < 10 and spec.dla_core is not None:
        raise _refuse("TensorRT {} DLA does not accept Q/DQ networks: build implicit INT8 from a cache".format(version))
    return PrecisionPlan(int8=True, fp16=spec.fp16_fallback)
