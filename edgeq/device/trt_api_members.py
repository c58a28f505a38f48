"""Which TensorRT Python API members exist in which release, so a build or run plan uses only what the device has.

Every entry is read from the Python bindings in NVIDIA/TensorRT (``python/src/infer/pyCore.cpp``, ``pyInt8.cpp``,
``python/src/parsers/pyOnnx.cpp``): the first release branch that defines the member, with its line there, and the first
release branch that no longer does. Branches checked: release/8.0, 8.2, 8.4, 8.5, 8.6, 10.0, 10.3, 10.16, 11.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .errors import AgentError
from .trt_version import TrtVersion


@dataclass(frozen=True)
class ApiMember:
    """A member of the TensorRT Python API: from which release, until which (exclusive), and where that is read."""

    since: Tuple[int, int]
    until: Optional[Tuple[int, int]]
    source: str

    def available(self, version: TrtVersion) -> bool:
        at = (version.major, version.minor)
        return self.since <= at and (self.until is None or at < self.until)


def _m(since: Tuple[int, int], source: str, until: Optional[Tuple[int, int]] = None) -> ApiMember:
    return ApiMember(since, until, "NVIDIA/TensorRT " + source)


CORE = "python/src/infer/pyCore.cpp"
API_MEMBERS: Dict[str, ApiMember] = {
    # building
    "Builder": _m((8, 0), "release/8.2 " + CORE + ":818"),
    "Builder.create_network": _m((8, 0), "release/8.2 " + CORE + ":820"),
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": _m((8, 0), "release/8.2 " + CORE + ":812 (absent from release/11.1)", (11, 0)),
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": _m((10, 0), "release/10.0 " + CORE + ":1456"),
    "OnnxParser.parse_from_file": _m((8, 0), "release/8.2 python/src/parsers/pyOnnx.cpp:84"),
    "Builder.create_builder_config": _m((8, 0), "release/8.2 " + CORE + ":833"),
    "IBuilderConfig.set_flag": _m((8, 0), "release/8.2 " + CORE + ":771"),
    "BuilderFlag.INT8": _m((8, 0), "release/8.2 " + CORE + ":705 (absent from release/11.1)", (11, 0)),
    "BuilderFlag.FP16": _m((8, 0), "release/8.2 " + CORE + ":704 (absent from release/11.1)", (11, 0)),
    "BuilderFlag.GPU_FALLBACK": _m((8, 0), "release/8.2 " + CORE + ":707"),
    "IBuilderConfig.max_workspace_size": _m((8, 0), "release/8.2 " + CORE + ":765 (absent from release/10.0)", (10, 0)),
    "IBuilderConfig.set_memory_pool_limit": _m((8, 4), "release/8.4 " + CORE + ":850"),
    "MemoryPoolType.WORKSPACE": _m((8, 4), "release/8.4 " + CORE + ":794"),
    "IBuilderConfig.int8_calibrator": _m((8, 0), "release/8.2 " + CORE + ":762 (absent from release/11.1)", (11, 0)),
    "IInt8EntropyCalibrator2": _m((8, 0), "release/8.2 python/src/infer/pyInt8.cpp:211 (absent from release/11.1)", (11, 0)),
    "IBuilderConfig.default_device_type": _m((8, 0), "release/8.2 " + CORE + ":768"),
    "IBuilderConfig.DLA_core": _m((8, 0), "release/8.2 " + CORE + ":769"),
    "DeviceType.DLA": _m((8, 0), "release/8.2 " + CORE + ":725"),
    "IBuilderConfig.profiling_verbosity": _m((8, 0), "release/8.2 " + CORE + ":797"),
    "IBuilderConfig.builder_optimization_level": _m((8, 6), "release/8.6 " + CORE + ":1227"),
    "ProfilingVerbosity.DETAILED": _m((8, 2), "release/8.2 " + CORE + ":730 (release/8.0 has VERBOSE only)"),
    "Builder.create_optimization_profile": _m((8, 0), "release/8.2 " + CORE + ":829"),
    "IOptimizationProfile.set_shape": _m((8, 0), "release/8.2 " + CORE + ":509"),
    "IBuilderConfig.add_optimization_profile": _m((8, 0), "release/8.2 " + CORE + ":783"),
    "IBuilderConfig.create_timing_cache": _m((8, 0), "release/8.2 " + CORE + ":803"),
    "IBuilderConfig.set_timing_cache": _m((8, 0), "release/8.2 " + CORE + ":805"),
    "IBuilderConfig.get_timing_cache": _m((8, 0), "release/8.2 " + CORE + ":807"),
    "ITimingCache.serialize": _m((8, 0), "release/8.2 " + CORE + ":753"),
    "Builder.build_serialized_network": _m((8, 0), "release/8.2 " + CORE + ":838"),
    "Runtime.DLA_core": _m((8, 0), "release/8.2 " + CORE + ":851"),
    "Runtime.deserialize_cuda_engine": _m((8, 0), "release/8.2 " + CORE + ":849"),
    "ICudaEngine.create_engine_inspector": _m((8, 2), "release/8.2 " + CORE + ":690"),
    "IEngineInspector.get_engine_information": _m((8, 2), "release/8.2 " + CORE + ":865"),
    "LayerInformationFormat.JSON": _m((8, 2), "release/8.2 " + CORE + ":750"),
    # running: name-based I/O (8.5 on)
    "ICudaEngine.create_execution_context": _m((8, 0), "release/8.2 " + CORE + ":654"),
    "ICudaEngine.num_io_tensors": _m((8, 5), "release/8.5 " + CORE + ":928"),
    "ICudaEngine.get_tensor_name": _m((8, 5), "release/8.5 " + CORE + ":929"),
    "ICudaEngine.get_tensor_mode": _m((8, 5), "release/8.5 " + CORE + ":930"),
    "TensorIOMode.INPUT": _m((8, 5), "release/8.5 " + CORE + ":1019"),
    "ICudaEngine.get_tensor_shape": _m((8, 5), "release/8.5 " + CORE + ":932"),
    "ICudaEngine.get_tensor_dtype": _m((8, 5), "release/8.5 " + CORE + ":933"),
    "IExecutionContext.set_input_shape": _m((8, 5), "release/8.5 " + CORE + ":819"),
    "IExecutionContext.get_tensor_shape": _m((8, 5), "release/8.5 " + CORE + ":821"),
    "IExecutionContext.set_tensor_address": _m((8, 5), "release/8.5 " + CORE + ":822"),
    "IExecutionContext.execute_async_v3": _m((8, 5), "release/8.5 " + CORE + ":839"),
    # running: binding-index I/O (gone in 10.0)
    "ICudaEngine.num_bindings": _m((8, 0), "release/8.2 " + CORE + ":635 (absent from release/10.0)", (10, 0)),
    "ICudaEngine.get_binding_name": _m((8, 0), "release/8.2 " + CORE + ":640 (absent from release/10.0)", (10, 0)),
    "ICudaEngine.binding_is_input": _m((8, 0), "release/8.2 " + CORE + ":642 (absent from release/10.0)", (10, 0)),
    "ICudaEngine.get_binding_shape": _m((8, 0), "release/8.2 " + CORE + ":644 (absent from release/10.0)", (10, 0)),
    "ICudaEngine.get_binding_dtype": _m((8, 0), "release/8.2 " + CORE + ":647 (absent from release/10.0)", (10, 0)),
    "IExecutionContext.set_binding_shape": _m((8, 0), "release/8.2 " + CORE + ":615 (absent from release/10.0)", (10, 0)),
    "IExecutionContext.get_binding_shape": _m((8, 0), "release/8.2 " + CORE + ":617 (absent from release/10.0)", (10, 0)),
    "IExecutionContext.execute_async_v2": _m((8, 0), "release/8.2 " + CORE + ":600 (absent from release/10.0)", (10, 0)),
}


def check_available(calls: List[str], version: TrtVersion, what: str) -> None:
    """Refuse, naming the member and its source, when a planned call does not exist in TensorRT ``version``."""
    for name in calls:
        member = API_MEMBERS[name]
        if not member.available(version):
            span = "{}.{}".format(*member.since) + ("" if member.until is None else " to before {}.{}".format(*member.until))
            raise AgentError(AgentError.UNSUPPORTED, f"{what}: the TensorRT Python API of {version} has no {name} "
                                                     f"(it exists in {span}; {member.source})")


def minimum_version(calls: List[str]) -> Tuple[int, int]:
    """The oldest release that has every member in ``calls``."""
    return max(API_MEMBERS[name].since for name in calls)
