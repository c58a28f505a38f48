"""What a TensorRT version (and GPU) can build, decided once for trtexec and the Python API alike.

Follows trt-jetson-facts.md §1.1 (no INT8 on CC 5.3/6.2), §3.1-3.4 (implicit INT8 8.x-10.x only,
removed in 11; Q/DQ needs the INT8 flag on 8.x, --stronglyTyped or INT8+FP16 on 10.x, no flags on 11;
TRT 8.x and 10.x DLA take no Q/DQ network), §4.5 (missing/absent cache traps). DLA exists on TensorRT 8.x to 10.7
and from 11.4.1 on AGX Orin only (``dla_support``, with its sources); the host's target profiles use the same function.
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
    builder_optimization_level: Optional[int] = None  # 0..5, TensorRT 8.6+
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


WORKING_WITH_DLA_11_4_1 = (
    "TensorRT 11.4.1 'Working with DLA' (docs.nvidia.com/deeplearning/tensorrt/11.4.1/inference-library/"
    "work-with-dla.html): 'TensorRT 10.7 was the last 10.x release that supported DLA'; 'DLA was unavailable in "
    "TensorRT 11.0 through 11.3'; '11.4.0 supported DLA only on Windows on ARM'; 11.4.1 supports DLA on Jetson AGX "
    "Orin with JetPack 7.2.2 or later, not on Jetson Thor")
RELEASE_NOTES_10_16_1 = (
    "TensorRT 10.16.1 Release Notes, 'JetPack support for Orin iGPUs' (docs.nvidia.com/deeplearning/tensorrt/10.16.1/"
    "getting-started/release-notes-10/10.16.1.html): 'Orin DLA is not supported at this time'")
NVINFER_DLA = "NVIDIA/TensorRT include/NvInfer.h (release/8.2 to release/10.7): DLA restrictions on each layer"
NO_QDQ_ON_DLA = (
    "no NVIDIA source says TensorRT {} DLA takes a Q/DQ network (8.x: 'DLA does not support Explicit Quantization', "
    "NVIDIA blog 'TensorRT and DLA'; NVIDIA/Deep-Learning-Accelerator-SW tools/qdq-translator turns a Q/DQ model into "
    "a model plus a calibration cache for DLA): build implicit INT8 from the calibration cache")


@dataclass(frozen=True)
class DlaSupport:
    """Whether a TensorRT release drives the DLA on a module, and the source that says so."""

    available: bool
    reason: str
    source: str


def dla_support(version: TrtVersion, module: Optional[str]) -> DlaSupport:
    """DLA through TensorRT ``version`` on ``module`` (one with DLA hardware): 8.x to 10.7, and 11.4.1+ on AGX Orin."""
    at = (version.major, version.minor, version.patch)
    if at < (10, 8, 0):
        return DlaSupport(True, f"TensorRT {version} drives the DLA", NVINFER_DLA + "; " + WORKING_WITH_DLA_11_4_1)
    if at < (11, 0, 0):
        return DlaSupport(False, f"TensorRT {version} has no DLA: TensorRT 10.7 was the last 10.x release with DLA, "
                                 "and 10.16 on JetPack 7.2 says 'Orin DLA is not supported at this time'",
                          WORKING_WITH_DLA_11_4_1 + "; " + RELEASE_NOTES_10_16_1)
    if at < (11, 4, 1):
        return DlaSupport(False, f"TensorRT {version} has no DLA on Jetson (DLA returned in 11.4.1, AGX Orin only)",
                          WORKING_WITH_DLA_11_4_1)
    if module is not None and "AGX Orin" not in module:
        return DlaSupport(False, f"TensorRT {version} drives the DLA on Jetson AGX Orin only, not on {module}",
                          WORKING_WITH_DLA_11_4_1)
    return DlaSupport(True, f"TensorRT {version} drives the DLA on Jetson AGX Orin (JetPack 7.2.2+)",
                      WORKING_WITH_DLA_11_4_1)


def _refuse(message: str) -> AgentError:
    return AgentError(AgentError.UNSUPPORTED, message)


def plan_precision(spec: TrtBuildSpec, version: TrtVersion, compute_capability: Optional[str],
                   module: Optional[str] = None) -> PrecisionPlan:
    """The precision plan for ``spec``, or an AgentError saying why this TensorRT/GPU cannot do it."""
    if spec.dla_core is not None:
        if spec.precision == "fp32":
            raise _refuse("DLA runs FP16 and INT8 only, not FP32")
        support = dla_support(version, module)
        if not support.available:
            raise _refuse(f"{support.reason}: build for the GPU (no --dla-core) [{support.source}]")
        if version.major <= 10 and spec.precision == "int8" and spec.quantization == "explicit":
            raise _refuse(f"DLA with a Q/DQ model on TensorRT {version}: {NO_QDQ_ON_DLA.format(version)}")
    if spec.precision == "fp32":
        return PrecisionPlan()
    if spec.precision == "fp16":
        if version.major >= 11:
            raise _refuse("TensorRT 11 has no FP16 flag: bake FP16 into the ONNX model (ModelOpt AutoCast)")
        return PrecisionPlan(fp16=True)
    if compute_capability in NO_INT8_COMPUTE_CAPABILITIES:
        raise _refuse(f"no INT8 on compute capability {compute_capability} (Nano/TX1/TX2): use FP16")
    if spec.fp16_fallback and version.major >= 11:
        raise _refuse("TensorRT 11 takes no precision flags: bake the FP16 fallback into the Q/DQ model")
    if spec.quantization == "implicit":
        if version.major >= 11:
            raise _refuse("implicit INT8 (calibration cache) was removed in TensorRT 11: use the Q/DQ model")
        if spec.cache is None:
            raise _refuse("implicit INT8 needs --cache: without it trtexec uses dummy ranges (a perf-only engine)")
        if not os.path.isfile(spec.cache):
            raise AgentError(AgentError.NOT_FOUND, f"calibration cache not found: {spec.cache} (trtexec would silently "
                                                   "calibrate on random data)")
        return PrecisionPlan(int8=True, fp16=spec.fp16_fallback, calibration_cache=spec.cache)
    if version.major >= 11:
        return PrecisionPlan(strongly_typed=True)
    if version.major == 10 and not spec.fp16_fallback:
        return PrecisionPlan(strongly_typed=True)
    return PrecisionPlan(int8=True, fp16=spec.fp16_fallback)
