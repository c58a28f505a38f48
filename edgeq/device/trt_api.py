"""The TensorRT Python API path, for devices without trtexec (written against the TensorRT Python API
docs: Builder, BuilderConfig.set_flag / set_memory_pool_limit / int8_calibrator / default_device_type /
DLA_core, OnnxParser, IEngineInspector, and the name-based I/O API of 8.5+).

``plan_api_build`` (pure, unit-tested) derives every setting; ``build_with_api`` and ``TrtSession``
apply it and need tensorrt (imported lazily) plus CUDA's runtime library (via ctypes). They have not
run here: there is no GPU or TensorRT on the development machines.
"""

from __future__ import annotations

import ctypes
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .backend import Session, TensorSpec
from .errors import AgentError
from .trt_rules import PrecisionPlan, TrtBuildSpec
from .trt_version import TrtVersion


@dataclass
class ApiBuildPlan:
    """Settings for Builder/BuilderConfig, by enum member name."""

    network_flags: List[str]
    builder_flags: List[str]
    calibration_cache: Optional[str]
    workspace_bytes: Optional[int]
    device_type: str
    dla_core: Optional[int]
    shapes: Dict[str, List[int]] = field(default_factory=dict)
    profiles: Dict[str, List[List[int]]] = field(default_factory=dict)  # input -> [min, opt, max]
    timing_cache: Optional[str] = None
    detailed_profiling: bool = True


def plan_api_build(spec: TrtBuildSpec, plan: PrecisionPlan, version: TrtVersion) -> ApiBuildPlan:
    network_flags = []
    if version.major < 10:
        network_flags.append("EXPLICIT_BATCH")  # implicit batch is gone in 10 (flag deprecated, then removed)
    if plan.strongly_typed and version.major == 10:
        network_flags.append("STRONGLY_TYPED")  # 11: every network is strongly typed
    builder_flags = [name for name, on in (("INT8", plan.int8), ("FP16", plan.fp16)) if on]
    if spec.dla_core is not None and spec.gpu_fallback:
        builder_flags.append("GPU_FALLBACK")
    return ApiBuildPlan(
        network_flags=network_flags,
        builder_flags=builder_flags,
        calibration_cache=plan.calibration_cache,
        workspace_bytes=spec.workspace_mb * (1 << 20) if spec.workspace_mb is not None else None,
        device_type="DLA" if spec.dla_core is not None else "GPU",
        dla_core=spec.dla_core,
        shapes=dict(spec.shapes),
        profiles=dict(spec.profiles),
        timing_cache=spec.timing_cache,
    )


def _trt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise AgentError(AgentError.UNSUPPORTED, "the TensorRT Python bindings are not installed")
    return tensorrt


def _logger(trt: Any, lines: List[str]) -> Any:
    class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt.ILogger.Severity.WARNING:
                lines.append(msg)
            sys.stderr.write("[TRT] {}\n".format(msg))

    return Logger()


def _cache_calibrator(trt: Any, path: str) -> Any:
    """An Entropy2 calibrator that only reads the cache (get_batch returns None: no calibration data)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            with open(path, "rb") as f:
                self.cache = f.read()

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: List[str]) -> None:
            return None

        def read_calibration_cache(self) -> bytes:
            return self.cache

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    return CacheCalibrator()


def build_with_api(onnx_path: str, engine_path: str, layer_info_path: Optional[str], plan: ApiBuildPlan) -> List[str]:
    """Build and serialize the engine; write its IEngineInspector JSON; return TensorRT's warnings."""
    trt = _trt()
    warnings: List[str] = []
    logger = _logger(trt, warnings)
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise AgentError(AgentError.BUILD_FAILED, "ONNX parser: " + "; ".join(errors))
    config = builder.create_builder_config()
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    if plan.calibration_cache:
        config.int8_calibrator = _cache_calibrator(trt, plan.calibration_cache)
    if plan.device_type == "DLA":
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    if plan.detailed_profiling:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if plan.shapes or plan.profiles:
        # IOptimizationProfile.set_shape(input, min, opt, max) (TensorRT Python API; developer guide,
        # "Optimization Profiles"); an input without a range is fixed at its shape
        profile = builder.create_optimization_profile()
        for name, dims in plan.shapes.items():
            if name not in plan.profiles:
                profile.set_shape(name, dims, dims, dims)
        for name, (low, opt, high) in plan.profiles.items():
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
        if plan.calibration_cache and plan.profiles:
            # implicit INT8 on a dynamic-shape network needs a calibration profile (TensorRT developer guide,
            # "INT8 Calibration with Dynamic Shapes"); the cache holds the scales, measured at opt
            config.set_calibration_profile(profile)
    timing = b""
    if plan.timing_cache:
        try:
            with open(plan.timing_cache, "rb") as f:
                timing = f.read()
        except OSError:
            pass
        config.set_timing_cache(config.create_timing_cache(timing), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise AgentError(AgentError.BUILD_FAILED, "TensorRT build failed: " + "; ".join(warnings[-5:]))
    with open(engine_path, "wb") as f:
        f.write(serialized)
    if plan.timing_cache:
        with open(plan.timing_cache, "wb") as f:
            f.write(memoryview(config.get_timing_cache().serialize()))
    if layer_info_path:
        runtime = trt.Runtime(logger)
        if plan.dla_core is not None:
            runtime.DLA_core = plan.dla_core
        engine = runtime.deserialize_cuda_engine(serialized)
        info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
        with open(layer_info_path, "w") as f:
            json.dump(json.loads(info), f)
    return warnings


class _Cuda:
    """The few CUDA runtime calls a TensorRT run needs, through ctypes (no pycuda / cuda-python on the device)."""

    H2D, D2H = 1, 2

    def __init__(self) -> None:
        for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"):
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise AgentError(AgentError.UNSUPPORTED, "CUDA runtime library (libcudart) not found")
        self.stream = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(self.stream)), "cudaStreamCreate")

    @staticmethod
    def check(status: int, what: str) -> None:
        if status != 0:
            raise AgentError(AgentError.RUN_FAILED, "{} failed with CUDA error {}".format(what, status))

    def malloc(self, size: int) -> int:
        pointer = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(max(size, 1))), "cudaMalloc")
        return int(pointer.value or 0)

    def copy(self, dst: int, src: int, size: int, kind: int) -> None:
        self.check(self.lib.cudaMemcpy(ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(size), kind),
                   "cudaMemcpy")

    def free(self, pointer: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(pointer))

    def synchronize(self) -> None:
        self.check(self.lib.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")


class TrtSession(Session):
    """Runs a serialized engine with the name-based I/O API (TensorRT 8.5+)."""

    def __init__(self, engine_path: str, dla_core: Optional[int]) -> None:
        trt = _trt()
        self.trt = trt
        self.cuda = _Cuda()
        runtime = trt.Runtime(_logger(trt, []))
        if dla_core is not None:
            runtime.DLA_core = dla_core
        with open(engine_path, "rb") as f:
            self.engine = runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise AgentError(AgentError.RUN_FAILED, "TensorRT could not deserialize " + engine_path)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.outputs = [n for n in names if not is_input[n]]
        self.inputs = [
            TensorSpec(n, [d if d >= 0 else None for d in self.engine.get_tensor_shape(n)],
                       np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))).name)
            for n in names if is_input[n]
        ]

    def run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        allocations = []
        try:
            for spec in self.inputs:
                array = np.ascontiguousarray(feeds[spec.name], dtype=spec.dtype)
                self.context.set_input_shape(spec.name, array.shape)
                pointer = self.cuda.malloc(array.nbytes)
                allocations.append(pointer)
                self.cuda.copy(pointer, array.ctypes.data, array.nbytes, _Cuda.H2D)
                self.context.set_tensor_address(spec.name, pointer)
            results = []
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                array = np.empty(shape, dtype=self.trt.nptype(self.engine.get_tensor_dtype(name)))
                pointer = self.cuda.malloc(array.nbytes)
                allocations.append(pointer)
                self.context.set_tensor_address(name, pointer)
                results.append((array, pointer))
            if not self.context.execute_async_v3(self.cuda.stream.value or 0):
                raise AgentError(AgentError.RUN_FAILED, "TensorRT execute_async_v3 failed")
            self.cuda.synchronize()
            for array, pointer in results:
                self.cuda.copy(array.ctypes.data, pointer, array.nbytes, _Cuda.D2H)
            return [array for array, _ in results]
        finally:
            for pointer in allocations:
                self.cuda.free(pointer)
