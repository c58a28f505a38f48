"""TensorRT command lines, refusals, Python-API plans and output parsers, without TensorRT.

Flag names and version differences follow trt-jetson-facts.md §6.1 (trtexec sampleOptions.cpp of
release/8.5, 8.6, 10.3, 10.13, 11.1) and §3 (INT8 modes by version); output formats follow §6.2
(console log, performance summary) and §6.3 (exportTimes / exportProfile / exportLayerInfo JSON).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeq.device.errors import AgentError
from edgeq.device.report import BuildOptions, ProbeReport
from edgeq.device.trt_api import BINDING_IO, TENSOR_IO, plan_api_build, plan_api_run
from edgeq.device.trt_api_members import API_MEMBERS, minimum_version
from edgeq.device.trt_backend import TensorRTBackend, timing_cache_name
from edgeq.device.trt_rules import TrtBuildSpec, plan_precision
from edgeq.device.trt_version import TrtVersion
from edgeq.device.trtexec_command import bench_command, build_command
from edgeq.device.trtexec_output import (
    latencies_from_times,
    parse_layer_info,
    parse_log,
    parse_performance_summary,
    parse_profile,
)

V85, V103, V114 = TrtVersion(8, 5, 2), TrtVersion(10, 3, 0), TrtVersion(11, 4, 1)


@pytest.fixture
def cache(tmp_path: Path) -> str:
    path = tmp_path / "m.cache"
    path.write_text("TRT-100300-EntropyCalibration2\ninput: 3c010204\n")  # §4.1 layout
    return str(path)


def command(version: TrtVersion, cc: str | None = "8.7", **fields: object) -> str:
    spec = TrtBuildSpec(onnx="m.onnx", engine="e.plan", **fields)  # type: ignore[arg-type]
    return " ".join(build_command("trtexec", spec, plan_precision(spec, version, cc), version))


def test_implicit_int8_commands(cache: str) -> None:
    fields = dict(precision="int8", quantization="implicit", cache=cache, fp16_fallback=True, workspace_mb=2048,
                  timing_cache="tc.cache", layer_info="li.json")
    tail = " --timingCacheFile=tc.cache --profilingVerbosity=detailed --exportLayerInfo=li.json"
    assert command(V85, **fields) == ("trtexec --onnx=m.onnx --saveEngine=e.plan --int8 --fp16 --calib=" + cache +
                                      " --memPoolSize=workspace:2048" + tail + " --buildOnly")
    assert command(V103, **fields) == ("trtexec --onnx=m.onnx --saveEngine=e.plan --int8 --fp16 --calib=" + cache +
                                       " --memPoolSize=workspace:2048" + tail + " --skipInference")
    assert command(TrtVersion(8, 2, 1), **fields).count("--workspace=2048") == 1
    dla = command(V103, precision="int8", quantization="implicit", cache=cache, fp16_fallback=True, dla_core=1,
                  gpu_fallback=True, shapes={"input": [1, 3, 227, 227]})
    assert dla.endswith("--useDLACore=1 --allowGPUFallback --shapes=input:1x3x227x227 --skipInference")
    assert "--int8 --fp16 --calib=" in dla


def test_explicit_int8_commands() -> None:
    base = "trtexec --onnx=m.onnx --saveEngine=e.plan"
    assert command(V85, precision="int8") == base + " --int8 --buildOnly"
    assert command(TrtVersion(8, 6, 2), precision="int8", fp16_fallback=True) == base + " --int8 --fp16 --skipInference"
    assert command(V103, precision="int8") == base + " --stronglyTyped --skipInference"
    assert command(V103, precision="int8", fp16_fallback=True) == base + " --int8 --fp16 --skipInference"
    assert command(V114, precision="int8") == base + " --skipInference"
    assert command(V114, precision="int8", dla_core=0, gpu_fallback=True) == (
        base + " --useDLACore=0 --allowGPUFallback --skipInference")
    assert command(V114, precision="fp32", workspace_mb=512) == base + " --memPoolSize=workspace:512 --skipInference"
    assert command(V85, precision="fp16") == base + " --fp16 --buildOnly"


@pytest.mark.parametrize("version, fields, cc, words", [
    (V114, dict(precision="int8", quantization="implicit"), "8.7", "removed in TensorRT 11"),
    (V103, dict(precision="int8", quantization="implicit"), "8.7", "dummy ranges"),
    (V103, dict(precision="int8", quantization="implicit", cache="/nonexistent.cache"), "8.7", "random data"),
    (V85, dict(precision="int8"), "5.3", "compute capability 5.3"),
    (V85, dict(precision="int8", quantization="implicit", cache="x"), "6.2", "compute capability 6.2"),
    (V85, dict(precision="int8", dla_core=0), "7.2", "no NVIDIA source says TensorRT 8.5.2 DLA takes a Q/DQ network"),
    (V103, dict(precision="int8", dla_core=0), "8.7", "build implicit INT8 from the calibration cache"),
    (TrtVersion(11, 1, 0), dict(precision="int8", dla_core=0), "8.7", "no DLA"),
    (TrtVersion(10, 16, 2), dict(precision="int8", quantization="implicit", cache="c", dla_core=0), "8.7",
     "Orin DLA is not supported at this time"),
    (TrtVersion(10, 8, 0), dict(precision="fp16", dla_core=0), "8.7", "10.7 was the last 10.x release"),
    (V114, dict(precision="fp16"), "11.0", "AutoCast"),
    (V114, dict(precision="int8", fp16_fallback=True), "11.0", "no precision flags"),
    (V103, dict(precision="fp32", dla_core=0), "8.7", "FP16 and INT8 only"),
])
def test_refusals(version: TrtVersion, fields: dict, cc: str, words: str) -> None:
    spec = TrtBuildSpec(onnx="m.onnx", engine="e.plan", **fields)
    with pytest.raises(AgentError) as caught:
        plan_precision(spec, version, cc)
    assert words in caught.value.message and caught.value.kind in ("unsupported", "not_found")


def test_bench_command() -> None:
    assert bench_command("trtexec", "e.plan", V103, 110, "t.json", 1, {"input": [4, 3, 8, 8]}) == [
        "trtexec", "--loadEngine=e.plan", "--iterations=110", "--duration=0", "--warmUp=0", "--avgRuns=1",
        "--exportTimes=t.json", "--useDLACore=1", "--shapes=input:4x3x8x8"]
    profiled = bench_command("trtexec", "e.plan", V103, 110, "t.json", None, {}, "p.json")
    assert profiled[-2:] == ["--exportProfile=p.json", "--separateProfileRun"]  # timed runs stay unprofiled


def test_no_dla_flag_is_ever_emitted_where_tensorrt_has_no_dla(cache: str) -> None:
    """JetPack 7.2 (TensorRT 10.16) Orin: the agent refuses before any command exists, so --useDLACore never runs."""
    spec = TrtBuildSpec(onnx="m.onnx", engine="e.plan", precision="int8", quantization="implicit", cache=cache,
                        dla_core=0, gpu_fallback=True)
    for version in (TrtVersion(10, 16, 2), TrtVersion(10, 8, 0), TrtVersion(11, 4, 0)):
        with pytest.raises(AgentError, match="no DLA"):
            plan_precision(spec, version, "8.7", "NVIDIA Jetson AGX Orin Developer Kit")
    assert "--useDLACore=0" in command(TrtVersion(10, 7, 0), **{k: v for k, v in vars(spec).items() if k not in ("onnx", "engine")})
    with pytest.raises(AgentError, match="AGX Orin only"):
        plan_precision(TrtBuildSpec(onnx="m", engine="e", precision="int8", dla_core=0), V114, "8.7", "NVIDIA Jetson Orin NX")


def _api(version: TrtVersion, **fields: object):  # type: ignore[no-untyped-def]
    spec = TrtBuildSpec(onnx="m.onnx", engine="e.plan", **fields)  # type: ignore[arg-type]
    return plan_api_build(spec, plan_precision(spec, version, "8.7"), version)


def test_python_api_build_calls_per_version_use_only_members_that_release_has(cache: str) -> None:
    """8.2 (JetPack 4.6) has no set_memory_pool_limit (8.4+): the plan sets max_workspace_size; 10.0 dropped the latter."""
    fields = dict(precision="fp16", workspace_mb=256, shapes={"x": [1, 3, 8, 8]}, timing_cache="t", layer_info="l")
    v82 = _api(TrtVersion(8, 2, 1), **fields)
    assert v82.workspace_call == "IBuilderConfig.max_workspace_size" and "IBuilderConfig.set_memory_pool_limit" not in v82.calls
    assert v82.calls[:4] == ["Builder", "Builder.create_network", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
                             "OnnxParser.parse_from_file"]
    assert {"ICudaEngine.create_engine_inspector", "ProfilingVerbosity.DETAILED"} <= set(v82.calls)  # both exist from 8.2
    for version in (TrtVersion(8, 4, 1), V85, V103, TrtVersion(10, 16, 2)):
        plan = _api(version, **fields)
        assert plan.workspace_call == "IBuilderConfig.set_memory_pool_limit" and "MemoryPoolType.WORKSPACE" in plan.calls
        assert "IBuilderConfig.max_workspace_size" not in plan.calls
    implicit = _api(TrtVersion(8, 2, 1), precision="int8", quantization="implicit", cache=cache)
    assert {"IBuilderConfig.int8_calibrator", "IInt8EntropyCalibrator2", "BuilderFlag.INT8"} <= set(implicit.calls)
    assert minimum_version(v82.calls) == (8, 2) and minimum_version(implicit.calls) == (8, 2)  # runs on JetPack 4.6
    assert minimum_version(_api(V103, precision="int8").calls) == (10, 0)  # STRONGLY_TYPED
    assert minimum_version(_api(V85, precision="fp16", workspace_mb=64).calls) == (8, 4)  # set_memory_pool_limit


def test_python_api_refuses_a_member_the_release_lacks() -> None:
    spec = TrtBuildSpec(onnx="m.onnx", engine="e.plan", precision="fp16", layer_info="l")
    with pytest.raises(AgentError, match=r"8.0.1 has no ProfilingVerbosity.DETAILED \(it exists in 8.2; NVIDIA/TensorRT release/8.2"):
        plan_api_build(spec, plan_precision(spec, TrtVersion(8, 0, 1), "7.2"), TrtVersion(8, 0, 1))


@pytest.mark.parametrize(("version", "io", "execute"), [
    (TrtVersion(8, 2, 1), "bindings", "IExecutionContext.execute_async_v2"),
    (TrtVersion(8, 4, 1), "bindings", "IExecutionContext.execute_async_v2"),
    (V85, "tensors", "IExecutionContext.execute_async_v3"),
    (V103, "tensors", "IExecutionContext.execute_async_v3"),
    (V114, "tensors", "IExecutionContext.execute_async_v3")])
def test_python_api_run_plan_binds_by_index_before_8_5_and_by_name_after(version: TrtVersion, io: str, execute: str) -> None:
    plan = plan_api_run(version)
    assert (plan.io, plan.calls[-1]) == (io, execute)
    assert all(API_MEMBERS[c].available(version) for c in plan.calls)
    assert not any(API_MEMBERS[c].available(version) for c in
                   (BINDING_IO if io == "tensors" and version.major >= 10 else TENSOR_IO if io == "bindings" else [])
                   if c != "ICudaEngine.create_execution_context")


def test_python_api_plans(cache: str) -> None:
    """BuilderConfig settings by version: EXPLICIT_BATCH before 10, STRONGLY_TYPED on 10 explicit, none on 11."""
    def api(version: TrtVersion, **fields: object):  # type: ignore[no-untyped-def]
        spec = TrtBuildSpec(onnx="m.onnx", engine="e.plan", **fields)  # type: ignore[arg-type]
        return plan_api_build(spec, plan_precision(spec, version, "8.7"), version)

    implicit = api(V85, precision="int8", quantization="implicit", cache=cache, fp16_fallback=True, dla_core=0,
                   gpu_fallback=True, workspace_mb=1024)
    assert implicit.network_flags == ["EXPLICIT_BATCH"]
    assert implicit.builder_flags == ["INT8", "FP16", "GPU_FALLBACK"]
    assert (implicit.calibration_cache, implicit.workspace_bytes) == (cache, 1 << 30)
    assert (implicit.device_type, implicit.dla_core) == ("DLA", 0)
    explicit10 = api(V103, precision="int8")
    assert (explicit10.network_flags, explicit10.builder_flags, explicit10.device_type) == (
        ["STRONGLY_TYPED"], [], "GPU")
    explicit11 = api(V114, precision="int8", shapes={"x": [1, 3, 4, 4]})
    assert (explicit11.network_flags, explicit11.builder_flags, explicit11.shapes) == ([], [], {"x": [1, 3, 4, 4]})


def test_versions() -> None:
    assert TrtVersion.from_log("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec") == V103
    assert TrtVersion.from_nv_int(8601) == TrtVersion(8, 6, 1) and TrtVersion(8, 6, 1).nv_int == 8601
    assert TrtVersion.from_nv_int(101303) == TrtVersion(10, 13, 3) and V103.nv_int == 100300
    assert TrtVersion.parse("8.5.2-1+cuda11.4") == V85 and TrtVersion.parse("10.3.0.30") == V103


BUILD_LOG = """&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=m.onnx --int8 --calib=m.cache
[11/28/2026-06:00:01] [I] === Model Options ===
[11/28/2026-06:00:02] [W] [TRT] Missing scale and zero-point for tensor onnx::Div_306_output, expect fall back to non-int8 implementation for any layer consuming or producing given tensor
[11/28/2026-06:00:02] [W] [TRT] Missing scale and zero-point for tensor (Unnamed Layer* 139) [Constant]_output, expect fall back to non-int8 implementation for any layer consuming or producing given tensor
[11/28/2026-06:00:02] [W] [TRT] Missing scale and zero-point for tensor onnx::Div_306_output, expect fall back to non-int8 implementation for any layer consuming or producing given tensor
[11/28/2026-06:00:03] [E] Error[4]: [network.cpp::validate::3100] Error Code 4: Internal Error
[11/28/2026-06:00:03] [I] Engine built in 12.3 sec.
&&&& FAILED TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=m.onnx --int8 --calib=m.cache
"""


def test_build_log() -> None:
    log = parse_log(BUILD_LOG)
    assert log.version == V103 and log.status == "FAILED"
    assert log.command == "trtexec --onnx=m.onnx --int8 --calib=m.cache"
    assert log.missing_scales == ["onnx::Div_306_output", "(Unnamed Layer* 139) [Constant]_output"]
    assert len(log.warnings) == 2 and log.errors == ["Error[4]: [network.cpp::validate::3100] Error Code 4: "
                                                     "Internal Error"]
    passed = parse_log("&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # trtexec\n"
                       "&&&& PASSED TensorRT.trtexec [TensorRT v8502] # trtexec\n")
    assert (passed.status, passed.version, passed.warnings) == ("PASSED", V85, [])


SUMMARY = """[11/28/2026-06:01:00] [I] === Performance summary ===
[11/28/2026-06:01:00] [I] Throughput: 812.345 qps
[11/28/2026-06:01:00] [I] Latency: min = 1.1875 ms, max = 2.5 ms, mean = 1.22 ms, median = 1.2 ms, percentile(90%) = 1.25 ms, percentile(95%) = 1.3 ms, percentile(99%) = 1.75 ms
[11/28/2026-06:01:00] [I] Enqueue Time: min = 0.1 ms, max = 0.3 ms, mean = 0.12 ms, median = 0.11 ms, percentile(90%) = 0.13 ms, percentile(95%) = 0.14 ms, percentile(99%) = 0.2 ms
[11/28/2026-06:01:00] [I] GPU Compute Time: min = 1.0 ms, max = 2.2 ms, mean = 1.05 ms, median = 1.04 ms, percentile(90%) = 1.08 ms, percentile(95%) = 1.1 ms, percentile(99%) = 1.5 ms
[11/28/2026-06:01:00] [I] Total Host Walltime: 3.00 s
[11/28/2026-06:01:00] [I] Total GPU Compute Time: 2.56 s
"""


def test_performance_summary() -> None:
    summary = parse_performance_summary(SUMMARY)
    assert summary is not None and summary.throughput_qps == pytest.approx(812.345)
    assert summary.sections["Latency"] == {"min": 1.1875, "max": 2.5, "mean": 1.22, "median": 1.2, "p90": 1.25,
                                           "p95": 1.3, "p99": 1.75}
    assert summary.sections["GPU Compute Time"]["p99"] == 1.5 and "Total Host Walltime" not in summary.sections
    assert parse_performance_summary("no summary here") is None


def test_export_times_and_profile() -> None:
    keys = ["startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs", "endComputeMs", "startD2hMs",
            "endD2hMs", "h2dMs", "computeMs", "d2hMs"]
    times = [dict(dict.fromkeys(keys, 0.0), latencyMs=float(i)) for i in range(1, 6)]
    assert latencies_from_times(times, skip=2) == [3.0, 4.0, 5.0]
    profile = [{"count": 100},
               {"name": "conv1 + relu1", "timeMs": 50.0, "averageMs": 0.5, "medianMs": 0.49, "percentage": 62.5},
               {"name": "fc", "timeMs": 30.0, "averageMs": 0.3, "medianMs": 0.3, "percentage": 37.5}]
    layers = parse_profile(profile)
    assert [(x.name, x.average_ms, x.percentage) for x in layers] == [("conv1 + relu1", 0.5, 62.5), ("fc", 0.3, 37.5)]


def _layer(name: str, layer_type: str, fmt: str) -> dict:
    return {"Name": name, "LayerType": layer_type, "Inputs": [{"Name": "in", "Location": "Device",
            "Dimensions": [1, 3, 8, 8], "Format/Datatype": "Row major linear FP32"}],
            "Outputs": [{"Name": "out", "Location": "Device", "Dimensions": [1, 8, 8, 8], "Format/Datatype": fmt}],
            "TacticName": "sm80_xmma", "TacticValue": "0x1"}


def test_layer_info_both_io_schemas() -> None:
    layers = [_layer("conv1 + relu1", "CaskConvolution", "Channel major INT8 format where channel % 32 == 0"),
              _layer("{ForeignNode[conv2...conv5]}", "DLA", "Half NC/16HW16"),
              _layer("softmax", "Softmax", "Row major linear FP32")]
    trt10 = parse_layer_info({"Layers": layers, "Bindings": ["input", "logits"]}, dla_requested=True)
    assert [(x.precision, x.device) for x in trt10.layers] == [("int8", "GPU"), ("fp16", "DLA"), ("fp32", "GPU")]
    assert trt10.io_tensors == ["input", "logits"]
    trt11 = parse_layer_info({"Layers": layers, "I/O Tensors": [
        {"Name": "input", "IOMode": "Input", "DataType": "Float", "Dimensions": [1, 3, 8, 8]},
        {"Name": "logits", "IOMode": "Output", "DataType": "Float", "Dimensions": [1, 10]}]}, dla_requested=False)
    assert trt11.io_tensors == ["input", "logits"] and {x.device for x in trt11.layers} == {"GPU"}
    names_only = parse_layer_info({"Layers": ["conv1", "fc"], "Bindings": []}, dla_requested=False)
    assert [(x.name, x.precision) for x in names_only.layers] == [("conv1", None), ("fc", None)]


def _probe(version: str, cc: str, trtexec: str | None) -> ProbeReport:
    return ProbeReport(l4t="36.4.3", module="NVIDIA Jetson AGX Orin Developer Kit", soc="tegra234",
                       compute_capability=cc, gpu_int8=cc not in ("5.3", "6.2"), dla_cores=2,
                       tensorrt_version=version, tensorrt_source="dpkg", tensorrt_python=False, trtexec=trtexec,
                       cpu_model="Cortex-A78AE", cpu_cores=12, memory_mb=61361, machine="aarch64", python="3.10.12",
                       onnxruntime_version=None, backends=["tensorrt"])


def test_backend_specs_and_refusal_before_any_build(tmp_path: Path) -> None:
    backend = TensorRTBackend(_probe("10.3.0", "8.7", "/usr/src/tensorrt/bin/trtexec"))
    options = BuildOptions(model="m.onnx", qdq="m.qdq.onnx", quantization="explicit", precision="int8",
                           dla_core=0, gpu_fallback=True)
    engine, reference = backend.specs(options, str(tmp_path), str(tmp_path / "tc"))
    assert (engine.onnx, engine.dla_core, reference.onnx, reference.precision, reference.dla_core) == (
        "m.qdq.onnx", 0, "m.onnx", "fp32", None)
    assert engine.timing_cache == reference.timing_cache == str(
        tmp_path / "tc" / "NVIDIA_Jetson_AGX_Orin_Developer_Kit-trt10.3.0.cache")
    assert timing_cache_name(None, V85) == "unknown-device-trt8.5.2.cache"
    thor = TensorRTBackend(_probe("11.4.1", "11.0", "/usr/src/tensorrt/bin/trtexec"))
    with pytest.raises(AgentError, match="removed in TensorRT 11"):
        thor.build(BuildOptions(model="m.onnx", cache="c", quantization="implicit", precision="int8"),
                   str(tmp_path), str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AgentError, match="pass --qdq"):
        backend.specs(BuildOptions(model="m.onnx", quantization="explicit", precision="int8"), "f", "t")
