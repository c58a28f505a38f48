"""trtexec command lines per TensorRT version (trt-jetson-facts.md §6.1, from sampleOptions.cpp 8.5-11.1)."""

from __future__ import annotations

from typing import Dict, List, Optional

from .trt_rules import PrecisionPlan, TrtBuildSpec
from .trt_version import TrtVersion


def shapes_flag(shapes: Dict[str, List[int]]) -> List[str]:
    if not shapes:
        return []
    return ["--shapes=" + ",".join("{}:{}".format(n, "x".join(str(d) for d in dims)) for n, dims in shapes.items())]


def profile_flags(profiles: Dict[str, List[List[int]]]) -> List[str]:
    """--minShapes/--optShapes/--maxShapes for the optimization profile (NVIDIA/TensorRT samples/common/
    sampleOptions.cpp, release/8.2 commit f5f4e6f2, lines 554-556: build options of trtexec)."""
    if not profiles:
        return []
    return [f"--{bound}Shapes=" + ",".join("{}:{}".format(n, "x".join(str(d) for d in dims[i])) for n, dims in profiles.items())
            for i, bound in enumerate(("min", "opt", "max"))]


def build_command(trtexec: str, spec: TrtBuildSpec, plan: PrecisionPlan, version: TrtVersion) -> List[str]:
    """Build-only trtexec call for ``spec`` under ``plan`` (already checked by trt_rules.plan_precision)."""
    argv = [trtexec, "--onnx=" + spec.onnx, "--saveEngine=" + spec.engine]
    if plan.strongly_typed and version.major == 10:
        argv.append("--stronglyTyped")  # 11.x: always strongly typed, the flag is a deprecated no-op
    if plan.int8:
        argv.append("--int8")
    if plan.fp16:
        argv.append("--fp16")
    if plan.calibration_cache:
        argv.append("--calib=" + plan.calibration_cache)
    if spec.dla_core is not None:
        argv.append(f"--useDLACore={spec.dla_core}")
        if spec.gpu_fallback:
            argv.append("--allowGPUFallback")
    if spec.workspace_mb is not None:
        old = version.major == 8 and version.minor < 4  # --memPoolSize arrived in 8.4; --workspace gone in 10
        argv.append(f"--workspace={spec.workspace_mb}" if old else f"--memPoolSize=workspace:{spec.workspace_mb}")
    if spec.builder_optimization_level is not None:  # 8.6+ (checked by TensorRTBackend.specs)
        argv.append(f"--builderOptimizationLevel={spec.builder_optimization_level}")
    argv += shapes_flag({n: d for n, d in spec.shapes.items() if n not in spec.profiles}) + profile_flags(spec.profiles)
    if spec.timing_cache:
        argv.append("--timingCacheFile=" + spec.timing_cache)
    if spec.layer_info:
        argv += ["--profilingVerbosity=detailed", "--exportLayerInfo=" + spec.layer_info]
    argv.append("--skipInference" if version.at_least(8, 6) else "--buildOnly")
    return argv


def bench_command(trtexec: str, engine: str, version: TrtVersion, runs: int, times_json: str,
                  dla_core: Optional[int], shapes: Dict[str, List[int]], profile_json: Optional[str] = None) -> List[str]:
    """Run ``runs`` timed inferences of a saved engine (no time-based warm-up or duration) and export each one's times;
    with ``profile_json``, also each layer's time, from a profile run of its own (``--separateProfileRun``: the
    profiler does not slow the timed runs). Both flags are in every release's sampleOptions.cpp from 8.2 on."""
    argv = [trtexec, "--loadEngine=" + engine, f"--iterations={runs}", "--duration=0", "--warmUp=0",
            "--avgRuns=1", "--exportTimes=" + times_json]
    if profile_json is not None:
        argv += ["--exportProfile=" + profile_json, "--separateProfileRun"]
    if dla_core is not None:
        argv.append(f"--useDLACore={dla_core}")
    return argv + shapes_flag(shapes)
