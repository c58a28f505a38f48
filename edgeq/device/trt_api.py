"""The TensorRT Python API path, for devices without trtexec.

``plan_api_build`` and ``plan_api_run`` (pure, unit-tested) derive every setting and the exact API members the build
and the runs will call for the device's TensorRT release, checked against ``trt_api_members`` (which release has
which member): TensorRT 8.2 (JetPack 4.6) builds with ``max_workspace_size`` and runs with the binding-index API
(``execute_async_v2``); 8.4 on sets ``set_memory_pool_limit``; 8.5 on runs with the name-based API
(``execute_async_v3``). ``build_with_api`` and ``TrtSession`` apply the plans and need tensorrt (imported lazily) plus
CUDA's runtime library (via ctypes). They have not run here: there is no GPU or TensorRT on the development machines.
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
from .trt_api_members import check_available
from .trt_rules import PrecisionPlan, TrtBuildSpec
from .trt_version import TrtVersion

TENSOR_IO = ["ICudaEngine.create_execution_context", "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name",
             "ICudaEngine.get_tensor_mode", "TensorIOMode.INPUT", "ICudaEngine.get_tensor_shape",
             "ICudaEngine.get_tensor_dtype", "IExecutionContext.set_input_shape", "IExecutionContext.get_tensor_shape",
             "IExecutionContext.set_tensor_address", "IExecutionContext.execute_async_v3"]
BINDING_IO = ["ICudaEngine.create_execution_context", "ICudaEngine.num_bindings", "ICudaEngine.get_binding_name",
              "ICudaEngine.binding_is_input", "ICudaEngine.get_binding_shape", "ICudaEngine.get_binding_dtype",
              "IExecutionContext.set_binding_shape", "IExecutionContext.get_binding_shape",
              "IExecutionContext.execute_async_v2"]


@dataclass
class ApiBuildPlan:
    """Settings for Builder/BuilderConfig, by enum member name, and every API member the build calls, in order."""

    network_flags: List[str]
    builder_flags: List[str]
    calibration_cache: Optional[str]
    workspace_bytes: Optional[int]
    workspace_call: Optional[str]
    device_type: str
    dla_core: Optional[int]
    shapes: Dict[str, List[int]] = field(default_factory=dict)
    profiles: Dict[str, List[List[int]]] = field(default_factory=dict)  # input -> [min, opt, max]
    timing_cache: Optional[str] = None
    detailed_profiling: bool = True
    calls: List[str] = field(default_factory=list)
    builder_optimization_level: Optional[int] = None


@dataclass
class ApiRunPlan:
    """How an engine's inputs and outputs are bound: by tensor name (8.5 on) or by binding index (before 10.0)."""

    io: str
    calls: List[str]


def plan_api_run(version: TrtVersion) -> ApiRunPlan:
    """Name-based I/O from TensorRT 8.5, binding indices before (8.2 on JetPack 4.6)."""
    plan = ApiRunPlan("tensors", TENSOR_IO) if version.at_least(8, 5) else ApiRunPlan("bindings", BINDING_IO)
    check_available(plan.calls, version, "running an engine")
    return plan


def plan_api_build(spec: TrtBuildSpec, plan: PrecisionPlan, version: TrtVersion, layer_info: bool = True) -> ApiBuildPlan:
    """The Builder/BuilderConfig settings for ``spec`` under ``plan``, refused if this release lacks a member they need."""
    network_flags = []
    if version.major < 10:
        network_flags.append("EXPLICIT_BATCH")  # implicit batch is gone in 10 (flag deprecated, then removed)
    if plan.strongly_typed and version.major == 10:
        network_flags.append("STRONGLY_TYPED")  # 11: every network is strongly typed
    builder_flags = [name for name, on in (("INT8", plan.int8), ("FP16", plan.fp16)) if on]
    if spec.dla_core is not None and spec.gpu_fallback:
        builder_flags.append("GPU_FALLBACK")
    workspace_call = None
    if spec.workspace_mb is not None:
        workspace_call = "IBuilderConfig.set_memory_pool_limit" if version.at_least(8, 4) else "IBuilderConfig.max_workspace_size"
    calls = ["Builder", "Builder.create_network"] + ["NetworkDefinitionCreationFlag." + f for f in network_flags]
    calls += ["OnnxParser.parse_from_file", "Builder.create_builder_config"]
    if builder_flags:
        calls += ["IBuilderConfig.set_flag"] + ["BuilderFlag." + f for f in builder_flags]
    if workspace_call:
        calls += [workspace_call] + (["MemoryPoolType.WORKSPACE"] if workspace_call.endswith("set_memory_pool_limit") else [])
    if plan.calibration_cache:
        calls += ["IBuilderConfig.int8_calibrator", "IInt8EntropyCalibrator2"]
    if spec.dla_core is not None:
        calls += ["IBuilderConfig.default_device_type", "DeviceType.DLA", "IBuilderConfig.DLA_core"]
    if spec.builder_optimization_level is not None:
        calls.append("IBuilderConfig.builder_optimization_level")
    calls += ["IBuilderConfig.profiling_verbosity", "ProfilingVerbosity.DETAILED"]
    if spec.shapes:
        calls += ["Builder.create_optimization_profile", "IOptimizationProfile.set_shape", "IBuilderConfig.add_optimization_profile"]
    if spec.timing_cache:
        calls += ["IBuilderConfig.create_timing_cache", "IBuilderConfig.set_timing_cache"]
    calls.append("Builder.build_serialized_network")
    if spec.timing_cache:
        calls += ["IBuilderConfig.get_timing_cache", "ITimingCache.serialize"]
    if layer_info:
        calls += (["Runtime.DLA_core"] if spec.dla_core is not None else []) + [
            "Runtime.deserialize_cuda_engine", "ICudaEngine.create_engine_inspector",
            "IEngineInspector.get_engine_information", "LayerInformationFormat.JSON"]
    check_available(calls, version, "building " + spec.engine)
    return ApiBuildPlan(
        network_flags=network_flags,
        builder_flags=builder_flags,
        calibration_cache=plan.calibration_cache,
        workspace_bytes=spec.workspace_mb * (1 << 20) if spec.workspace_mb is not None else None,
        workspace_call=workspace_call,
        device_type="DLA" if spec.dla_core is not None else "GPU",
        dla_core=spec.dla_core,
        shapes=dict(spec.shapes),
        profiles=dict(spec.profiles),
        timing_cache=spec.timing_cache,
        calls=calls,
        builder_optimization_level=spec.builder_optimization_level,
    )


def _trt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise AgentError(AgentError.UNSUPPORTED, "the TensorRT Python bindings are not installed") from None
    return tensorrt


def _logger(trt: Any, lines: List[str]) -> Any:
    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt.ILogger.Severity.WARNING:
                lines.append(msg)
            sys.stderr.write(f"[TRT] {msg}\n")

    return Logger()


def _cache_calibrator(trt: Any, path: str) -> Any:
    """An Entropy2 calibrator that only reads the cache (get_batch returns None: no calibration data)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
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
    if plan.workspace_call == "IBuilderConfig.set_memory_pool_limit":
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    elif plan.workspace_call == "IBuilderConfig.max_workspace_size":
        config.max_workspace_size = plan.workspace_bytes
    if plan.calibration_cache:
        config.int8_calibrator = _cache_calibrator(trt, plan.calibration_cache)
    if plan.device_type == "DLA":
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    if plan.builder_optimization_level is not None:
        config.builder_optimization_level = plan.builder_optimization_level
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
            raise AgentError(AgentError.RUN_FAILED, f"{what} failed with CUDA error {status}")

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
    """Runs a serialized engine: name-based I/O on TensorRT 8.5+, binding indices before (``plan_api_run``)."""

    def __init__(self, engine_path: str, dla_core: Optional[int]) -> None:
        trt = _trt()
        self.trt = trt
        self.plan = plan_api_run(TrtVersion.parse(trt.__version__))
        self.cuda = _Cuda()
        runtime = trt.Runtime(_logger(trt, []))
        if dla_core is not None:
            runtime.DLA_core = dla_core
        with open(engine_path, "rb") as f:
            self.engine = runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise AgentError(AgentError.RUN_FAILED, "TensorRT could not deserialize " + engine_path)
        self.context = self.engine.create_execution_context()
        engine = self.engine
        if self.plan.io == "tensors":
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
            shape_of, dtype_of = engine.get_tensor_shape, engine.get_tensor_dtype
        else:
            names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]
            is_input = {n: engine.binding_is_input(i) for i, n in enumerate(names)}
            index = {n: i for i, n in enumerate(names)}
            shape_of = lambda n: engine.get_binding_shape(index[n])  # noqa: E731 (as the methods bound above)
            dtype_of = lambda n: engine.get_binding_dtype(index[n])  # noqa: E731 (as the methods bound above)
        self.names = names
        self.outputs = [n for n in names if not is_input[n]]
        self.output_dtypes = {n: np.dtype(trt.nptype(dtype_of(n))) for n in self.outputs}
        self.inputs = [TensorSpec(n, [d if d >= 0 else None for d in shape_of(n)], np.dtype(trt.nptype(dtype_of(n))).name)
                       for n in names if is_input[n]]

    def run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        allocations = []
        bindings = [0] * len(self.names)
        context, by_name = self.context, self.plan.io == "tensors"
        try:
            for spec in self.inputs:
                array = np.ascontiguousarray(feeds[spec.name], dtype=spec.dtype)
                pointer = self.cuda.malloc(array.nbytes)
                allocations.append(pointer)
                self.cuda.copy(pointer, array.ctypes.data, array.nbytes, _Cuda.H2D)
                if by_name:
                    context.set_input_shape(spec.name, array.shape)
                    context.set_tensor_address(spec.name, pointer)
                else:
                    index = self.names.index(spec.name)
                    context.set_binding_shape(index, array.shape)
                    bindings[index] = pointer
            results = []
            for name in self.outputs:
                index = self.names.index(name)
                shape = tuple(context.get_tensor_shape(name) if by_name else context.get_binding_shape(index))
                array = np.empty(shape, dtype=self.output_dtypes[name])
                pointer = self.cuda.malloc(array.nbytes)
                allocations.append(pointer)
                if by_name:
                    context.set_tensor_address(name, pointer)
                else:
                    bindings[index] = pointer
                results.append((array, pointer))
            stream = self.cuda.stream.value or 0
            ok = context.execute_async_v3(stream) if by_name else context.execute_async_v2(bindings, stream)
            if not ok:
                raise AgentError(AgentError.RUN_FAILED, "TensorRT " + self.plan.calls[-1].split(".")[-1] + " failed")
            self.cuda.synchronize()
            for array, pointer in results:
                self.cuda.copy(array.ctypes.data, pointer, array.nbytes, _Cuda.D2H)
            return [array for array, _ in results]
        finally:
            for pointer in allocations:
                self.cuda.free(pointer)
