"""The tensorrt backend: trtexec when present, else the TensorRT Python API.

Builds the requested engine (engine.plan) and an FP32 engine of the FP32 model (reference.fp32.plan),
each with its console log, layer-info JSON (precision, DLA/GPU placement) and the device's timing cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from .backend import Backend, BuildResult, Session, TensorSpec, artifact
from .errors import AgentError
from .report import BuildOptions, BuiltModel, LatencyStats, ProbeReport
from .trt_api import TrtSession, build_with_api, plan_api_build
from .trt_rules import PrecisionPlan, TrtBuildSpec, plan_precision
from .trt_version import TrtVersion
from .trtexec_command import bench_command, build_command
from .trtexec_output import bench_stats, parse_layer_info, parse_log

ENGINE_FILE = "engine.plan"
REFERENCE_FILE = "reference.fp32.plan"


def timing_cache_name(module: Optional[str], version: TrtVersion) -> str:
    """One timing cache per device model and TensorRT version."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "{}-trt{}".format(module or "unknown-device", version)) + ".cache"


def _run_logged(argv: List[str], log_path: str) -> int:
    """Run a command with its output going to ``log_path`` (and the agent's stderr)."""
    sys.stderr.write("$ {}\n".format(" ".join(argv)))
    with open(log_path, "wb") as log:
        try:
            return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT).returncode
        except OSError as exc:
            raise AgentError(AgentError.BUILD_FAILED, f"cannot run {argv[0]}: {exc}") from exc


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, probe: ProbeReport) -> None:
        if not probe.tensorrt_version:
            raise AgentError(AgentError.UNSUPPORTED, "TensorRT version unknown on this device")
        self.probe = probe
        self.trt_version = TrtVersion.parse(probe.tensorrt_version)
        self.trtexec = probe.trtexec

    def version(self) -> str:
        return str(self.trt_version)

    def specs(self, options: BuildOptions, folder: str, timing_cache_dir: str) -> List[TrtBuildSpec]:
        """The INT8 (or requested) engine's build and the FP32 reference's build."""
        if options.precision == "int8" and options.quantization == "explicit" and not options.qdq:
            raise AgentError(AgentError.INVALID_INPUT, "explicit INT8 builds from the Q/DQ model: pass --qdq")
        explicit_int8 = options.precision == "int8" and options.quantization == "explicit"
        level = options.builder_optimization_level
        if level is not None and not self.trt_version.at_least(8, 6):
            # trtexec --builderOptimizationLevel and IBuilderConfig.builder_optimization_level arrived in 8.6:
            # NVIDIA/TensorRT release/8.6 samples/common/sampleOptions.cpp:1163, python/src/infer/pyCore.cpp:1227
            raise AgentError(AgentError.UNSUPPORTED, "builder_optimization_level needs TensorRT 8.6 or later, this "
                                                     f"device has {self.trt_version}")
        timing = os.path.join(timing_cache_dir, timing_cache_name(self.probe.module, self.trt_version))
        engine = TrtBuildSpec(
            onnx=options.qdq if explicit_int8 and options.qdq else options.model,
            engine=os.path.join(folder, ENGINE_FILE), precision=options.precision,
            quantization=options.quantization, cache=options.cache, fp16_fallback=options.fp16_fallback,
            dla_core=options.dla_core, gpu_fallback=options.gpu_fallback, workspace_mb=options.workspace_mb,
            builder_optimization_level=level, shapes=options.shapes, profiles=options.profiles, timing_cache=timing,
            layer_info=os.path.join(folder, "layers.engine.json"))
        reference = TrtBuildSpec(
            onnx=options.model, engine=os.path.join(folder, REFERENCE_FILE), precision="fp32",
            workspace_mb=options.workspace_mb, builder_optimization_level=level, shapes=options.shapes,
            profiles=options.profiles, timing_cache=timing, layer_info=os.path.join(folder, "layers.reference.json"))
        return [engine, reference]

    def build(self, options: BuildOptions, folder: str, timing_cache_dir: str) -> BuildResult:
        specs = self.specs(options, folder, timing_cache_dir)
        plans = [plan_precision(s, self.trt_version, self.probe.compute_capability, self.probe.module) for s in specs]
        engine, reference = [self._build_one(s, p, folder) for s, p in zip(specs, plans)]
        inputs: List[TensorSpec] = [TensorSpec(n, list(d)) for n, d in options.shapes.items()]
        if self.probe.tensorrt_python:
            inputs = TrtSession(specs[1].engine, None).inputs
        return BuildResult(self.version(), engine, reference, inputs, timing_cache=specs[0].timing_cache)

    def _build_one(self, spec: TrtBuildSpec, plan: PrecisionPlan, folder: str) -> BuiltModel:
        start = time.perf_counter()
        command: Optional[List[str]] = None
        if self.trtexec:
            command = build_command(self.trtexec, spec, plan, self.trt_version)
            log_path = os.path.splitext(spec.engine)[0] + ".build.log"
            code = _run_logged(command, log_path)
            with open(log_path, errors="replace") as f:
                log = parse_log(f.read())
            if code != 0 or log.status == "FAILED" or not os.path.isfile(spec.engine):
                raise AgentError(AgentError.BUILD_FAILED, "trtexec failed ({}): {}".format(
                    code, "; ".join(log.errors[-5:]) or "see " + os.path.basename(log_path)))
            warnings = log.warnings
        else:
            warnings = build_with_api(spec.onnx, spec.engine, spec.layer_info,
                                      plan_api_build(spec, plan, self.trt_version, layer_info=bool(spec.layer_info)))
        layers = []
        if spec.layer_info and os.path.isfile(spec.layer_info):
            with open(spec.layer_info) as f:
                layers = parse_layer_info(json.load(f), spec.dla_core is not None).layers
        return BuiltModel(artifact=artifact(folder, os.path.basename(spec.engine)),
                          seconds=time.perf_counter() - start, command=command, dla_core=spec.dla_core,
                          layers=layers, warnings=warnings)

    def load(self, folder: str, built: BuiltModel) -> Session:
        return TrtSession(os.path.join(folder, built.artifact.path), built.dla_core)

    def benchmark(self, folder: str, built: BuiltModel, batch: int, warmup: int, iterations: int,
                  shapes: Dict[str, List[int]]) -> LatencyStats:
        """trtexec --exportTimes latencies (warm-up runs dropped), its GPU compute time and a per-layer profile when
        trtexec is there, else wall clock."""
        if not self.trtexec:
            return super().benchmark(folder, built, batch, warmup, iterations, shapes)
        scratch = tempfile.mkdtemp(prefix=".bench-", dir=folder)
        times_path, profile_path, log_path = (os.path.join(scratch, n) for n in ("times.json", "profile.json", "bench.log"))
        try:
            argv = bench_command(self.trtexec, os.path.join(folder, built.artifact.path), self.trt_version,
                                 warmup + iterations, times_path, built.dla_core, shapes, profile_path)
            if _run_logged(argv, log_path) != 0:
                raise AgentError(AgentError.RUN_FAILED, "trtexec benchmark failed: " + " ".join(argv))
            with open(times_path) as f:
                times = json.load(f)
            with open(log_path, errors="replace") as f:
                log = f.read()
            profile = None
            if os.path.isfile(profile_path):
                with open(profile_path) as f:
                    profile = json.load(f)
            return bench_stats(times, log, profile, warmup, batch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
