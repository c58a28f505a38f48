"""edgeq's TensorRT readers, writers and command lines held against files TensorRT itself wrote (tests/fixtures/trt).

The fixtures come from public repositories, each named with its commit in tests/fixtures/trt/SOURCES.md: calibration
caches written by TensorRT 7.2 to 10.13 (Entropy2 and MinMax), trtexec 8.6 and 10.16 console logs, IEngineInspector
JSON, --exportProfile/--exportTimes JSON, and the flags each release's samples/common/sampleOptions.cpp parses.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from edgeq.calibrate.cache import build_cache, constant_ranges, parse_cache
from edgeq.device.trt_rules import TrtBuildSpec, plan_precision
from edgeq.device.trt_version import TrtVersion
from edgeq.device.trtexec_command import bench_command, build_command
from edgeq.device.trtexec_output import (
    bench_stats,
    latencies_from_times,
    parse_layer_info,
    parse_log,
    parse_performance_summary,
    parse_profile,
)
from tests.check_graphs import finish

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "trt"
CACHES = FIXTURES / "caches"
TRTEXEC = FIXTURES / "trtexec"

CACHE_FILES = {  # fixture -> (TensorRT version in the header, algorithm, tensor lines)
    "trt7201-entropy2.cache": ((7, 2, 1), "EntropyCalibration2", 45),
    "trt7203-entropy2.cache": ((7, 2, 3), "EntropyCalibration2", 125),
    "trt8400-minmax.cache": ((8, 4, 0), "MinMaxCalibration", 67),
    "trt8501-entropy2.cache": ((8, 5, 1), "EntropyCalibration2", 126),
    "trt8502-entropy2.cache": ((8, 5, 2), "EntropyCalibration2", 313),
    "trt100300-entropy2.cache": ((10, 3, 0), "EntropyCalibration2", 343),
    "trt101000-entropy2-bert.cache": ((10, 10, 0), "EntropyCalibration2", 172),
    "trt101000-entropy2-transformer.cache": ((10, 10, 0), "EntropyCalibration2", 140),
    "trt101200-entropy2.cache": ((10, 12, 0), "EntropyCalibration2", 431),
    "trt101303-minmax-head.cache": ((10, 13, 3), "MinMaxCalibration", 10),
}


def _bits(scale: float) -> int:
    return struct.unpack(">I", struct.pack(">f", scale))[0]


@pytest.mark.parametrize("name", sorted(CACHE_FILES))
def test_reader_and_writer_on_caches_tensorrt_wrote(name):
    text = (CACHES / name).read_text()
    version, algorithm, count = CACHE_FILES[name]
    cache = parse_cache(text, name)
    assert (TrtVersion.from_nv_int(cache.version), cache.algorithm, len(cache.scales)) == (TrtVersion(*version), algorithm, count)
    assert cache.version == TrtVersion(*version).nv_int  # the header is NV_TENSORRT_VERSION, old and new formula
    lines = text.splitlines()[1:]
    for line in lines:  # every value is the float32 whose bits TensorRT wrote
        tensor, _, digits = line.rpartition(": ")
        assert _bits(cache.scales[tensor]) == int(digits, 16)
    padded = all(len(line.rpartition(": ")[2]) == 8 for line in lines)
    if padded:  # TensorRT wrote 8 digits everywhere: edgeq's text is byte-identical
        assert cache.to_text() == text
    writable = {t: s * 127.0 for t, s in cache.scales.items() if math.isfinite(s) and s > 0}
    rewritten = parse_cache(build_cache(writable, version, algorithm).to_text())
    assert rewritten.header == cache.header and rewritten.scales == {t: cache.scales[t] for t in writable}
    if padded and len(writable) == len(cache.scales):  # amax -> scale -> float32 bits is exact
        assert build_cache(cache.amax(), version, algorithm).to_text() == text


def test_tensorrt_writes_unpadded_zero_and_infinite_scales_which_edgeq_reads_and_never_writes():
    head = parse_cache((CACHES / "trt101303-minmax-head.cache").read_text())
    assert head.scales["/Sub_output_0"] == 0.0 and head.scales["/Mul_output_0"] == 0.0  # written as "0"
    assert head.scales["/Cast_output_0"] == pytest.approx(1 / 127, rel=1e-7)  # MinMax: exactly amax 1.0 -> 3c010204
    bert = parse_cache((CACHES / "trt101000-entropy2-bert.cache").read_text())
    assert bert.scales["/bert/encoder/layer.0/attention/self/Add_output_0"] == math.inf  # 7f800000
    for bad in (0.0, math.inf):
        with pytest.raises(ValueError, match="positive and finite"):
            build_cache({"t": bad}, (10, 13, 3))


def _constant_model(constants: dict[str, float]) -> object:
    """x * c for each named scalar constant c (an initializer read by Mul, as after edgeq's prepare)."""
    nodes, previous = [], "x"
    for i, name in enumerate(constants):
        nodes.append(helper.make_node("Mul", [previous, name], [f"m{i}"], name=f"mul{i}"))
        previous = f"m{i}"
    return finish(nodes, {"x": [1, 8]}, previous, {n: np.array(v, np.float32) for n, v in constants.items()})


@pytest.mark.parametrize(("fixture", "constants"), [
    ("trt100300-entropy2.cache", {"/model.10/m/m.0/attn/Constant_1_output_0": 1 / math.sqrt(32)}),
    ("trt101000-entropy2-bert.cache", {"/bert/encoder/layer.0/intermediate/intermediate_act_fn/Constant_output_0": math.sqrt(2),
                                       "/bert/encoder/layer.0/intermediate/intermediate_act_fn/Constant_1_output_0": 1.0,
                                       "/bert/encoder/layer.0/intermediate/intermediate_act_fn/Constant_2_output_0": 0.5}),
])
def test_constant_entries_have_the_names_and_ranges_tensorrt_10_gives_them(fixture, constants):
    """TensorRT's Entropy2 wrote these constants' amax as max|value| x 4097/4096 (its histogram edge); edgeq writes max|value|."""
    real = parse_cache((CACHES / fixture).read_text()).amax()
    version = TrtVersion.from_nv_int(parse_cache((CACHES / fixture).read_text()).version)
    written = constant_ranges(_constant_model(constants), (version.major, version.minor, version.patch))
    assert set(written) == {f"{name}_output" for name in constants} and set(written) <= set(real)
    for name, value in constants.items():
        assert written[f"{name}_output"] == pytest.approx(value, rel=1e-6)
        assert real[f"{name}_output"] == pytest.approx(value * 4097 / 4096, rel=1e-5)
    assert constant_ranges(_constant_model(constants), (8, 6, 2)) == {}  # 8.x names them (Unnamed Layer* N) [Constant]


def test_conv_weights_get_no_constant_entry_as_in_tensorrt_10_caches_of_conv_nets():
    real = parse_cache((CACHES / "trt100300-entropy2.cache").read_text())
    assert not any(name.endswith(".weight_output") for name in real.scales)
    model = finish([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")], {"x": [1, 2, 4, 4]}, "y",
                   {"w": np.ones((2, 2, 1, 1)), "b": np.ones(2)})
    assert constant_ranges(model, (10, 3, 0)) == {}


def test_trtexec_8_6_log_and_performance_summary():
    text = (TRTEXEC / "trt8600-bench-excerpt.log").read_text()
    log = parse_log(text)
    assert (log.version, log.status) == (TrtVersion(8, 6, 0), "PASSED")
    assert log.command == "trtexec --loadEngine=./model-FP32.plan --shapes=tensor-0:4x1x28x28 --verbose"
    assert log.warnings[0] == "* GPU compute time is unstable, with coefficient of variance = 44.3558%."
    summary = parse_performance_summary(text)
    assert summary.throughput_qps == 21009.2
    assert summary.sections["Latency"]["min"] == 0.0490112 and summary.sections["Latency"]["median"] == 0.0517578
    assert set(summary.sections) == {"Latency", "Enqueue Time", "H2D Latency", "GPU Compute Time", "D2H Latency"}
    assert set(summary.sections["GPU Compute Time"]) == {"min", "max", "mean", "median", "p90", "p95", "p99"}


def test_trtexec_10_16_logs_with_the_build_tag():
    bench = (TRTEXEC / "trt101601-bench.log").read_text()
    log = parse_log(bench)
    assert (log.version, log.status) == (TrtVersion(10, 16, 1), "PASSED")  # '[TensorRT v101601] [b11] #'
    assert log.command.startswith("trtexec --loadEngine=model-trained.trt --shapes=x:4x1x28x28")
    summary = parse_performance_summary(bench)
    assert summary.throughput_qps == 24896.9
    assert summary.sections["H2D Latency"]["max"] == 0.0 and summary.sections["GPU Compute Time"]["min"] == 0.0383301
    build = parse_log((TRTEXEC / "trt101601-build.log").read_text())
    assert build.status == "PASSED" and build.errors == []
    assert "[TRT] ModelImporter.cpp:994: Make sure output z has Int64 binding." in build.warnings
    assert any(w.startswith("Dynamic dimensions required for input: x") for w in build.warnings)
    assert parse_performance_summary(build_text := (TRTEXEC / "trt101601-build.log").read_text()) is None and build_text


def test_layer_info_of_a_qdq_resnet_shows_the_fused_int8_residual():
    info = parse_layer_info(json.loads((TRTEXEC / "trex-resnet-qat-residual.graph.json").read_text()), dla_requested=False)
    assert info.io_tensors == ["input.1", "470"] and len(info.layers) == 26
    by_name = {layer.name: layer for layer in info.layers}
    assert by_name["QuantizeLinear_2"].precision == "int8"  # 'Row major Int8 format'
    fused = by_name["layer1.0.conv2.weight + QuantizeLinear_32 + Conv_34 + Add_42 + Relu_43"]
    assert (fused.layer_type, fused.precision, fused.device) == ("CaskConvolution", "int8", "GPU")
    assert info.layers[-1].precision == "fp32"  # 'Row major linear FP32'


def test_layer_info_of_tensorrt_10_16():
    info = parse_layer_info(json.loads((TRTEXEC / "trt101601-layerinfo.json").read_text()), dla_requested=False)
    assert info.io_tensors == ["x", "y", "z"] and len(info.layers) == 9
    assert info.layers[0].name == "node_conv2d + node_relu" and info.layers[0].precision == "fp32"  # 'Float'
    assert {layer.device for layer in info.layers} == {"GPU"}


def test_export_profile_and_export_times():
    raw = json.loads((TRTEXEC / "trex-resnet-qat-residual.profile.json").read_text())
    profile = parse_profile(raw)
    assert {layer.name for layer in profile} == {e["name"] for e in raw if "name" in e}
    first = next(e for e in raw if e.get("name") == "QuantizeLinear_2")
    assert next(layer for layer in profile if layer.name == "QuantizeLinear_2").average_ms == first["averageMs"] == 0.095232
    assert [layer.time_ms for layer in profile] == sorted((e["timeMs"] for e in raw if "name" in e), reverse=True)
    assert sum(layer.percentage for layer in profile) == pytest.approx(100.0, abs=0.01)
    times = json.loads((TRTEXEC / "trex-resnet-fp32.timing.json").read_text())
    latencies = latencies_from_times(times, skip=3)
    assert len(latencies) == 260 and latencies[0] == times[3]["latencyMs"]


FLAGS = json.loads((Path(__file__).resolve().parent.parent / "edgeq" / "check" / "data" / "trtexec-flags.json").read_text())
BRANCH = {(8, 2): "8.2", (8, 5): "8.5", (8, 6): "8.6", (10, 3): "10.3", (10, 13): "10.13", (10, 16): "10.16", (11, 4): "11.1"}
VERSIONS = [TrtVersion(8, 2, 1), TrtVersion(8, 5, 2), TrtVersion(8, 6, 2), TrtVersion(10, 3, 0), TrtVersion(10, 13, 3),
            TrtVersion(10, 16, 2), TrtVersion(11, 4, 1)]


def _specs(version: TrtVersion, cache: str) -> list[TrtBuildSpec]:
    common = dict(onnx="m.onnx", engine="e.plan", workspace_mb=1024, shapes={"x": [1, 3, 8, 8]}, timing_cache="t.cache",
                  layer_info="l.json")
    specs = [TrtBuildSpec(precision="fp32", **common), TrtBuildSpec(precision="int8", quantization="explicit", **common)]
    if version.major < 11:
        specs += [TrtBuildSpec(precision="fp16", **common),
                  TrtBuildSpec(precision="int8", quantization="implicit", cache=cache, fp16_fallback=True, **common),
                  TrtBuildSpec(precision="int8", quantization="explicit", fp16_fallback=True, **common)]
    if version.major < 10 or (version.major, version.minor) < (10, 8) or (version.major, version.minor) >= (11, 4):
        specs.append(TrtBuildSpec(precision="int8", quantization="implicit" if version.major < 11 else "explicit",
                                  cache=cache if version.major < 11 else None, dla_core=0, gpu_fallback=True, **common))
    return specs


@pytest.mark.parametrize("version", VERSIONS, ids=str)
def test_every_flag_edgeq_passes_is_parsed_by_that_releases_trtexec(version, tmp_path):
    cache = tmp_path / "c.cache"
    cache.write_text("TRT-100300-EntropyCalibration2\n")
    branch = FLAGS[BRANCH[(version.major, version.minor)]]
    cc = "8.7"
    for spec in _specs(version, str(cache)):
        plan = plan_precision(spec, version, cc, "Jetson AGX Orin")
        argv = build_command("trtexec", spec, plan, version)
        argv += bench_command("trtexec", "e.plan", version, 10, "t.json", spec.dla_core, spec.shapes, "p.json")[1:]
        for arg in argv[1:]:
            flag = arg.split("=", 1)[0]
            assert flag in branch["flags"], f"{flag} is not parsed by trtexec {branch['branch']} sampleOptions.cpp"


def test_the_flag_table_has_the_version_differences_edgeq_relies_on():
    assert "--workspace" in FLAGS["8.2"]["flags"] and "--memPoolSize" not in FLAGS["8.2"]["flags"]
    assert "--skipInference" not in FLAGS["8.5"]["flags"] and FLAGS["8.6"]["flags"]["--skipInference"] == 975
    assert "--buildOnly" not in FLAGS["10.3"]["flags"] and "--workspace" not in FLAGS["10.3"]["flags"]
    assert FLAGS["10.3"]["flags"]["--stronglyTyped"] == 1231 and "--stronglyTyped" not in FLAGS["8.6"]["flags"]
    assert not {"--int8", "--fp16", "--calib"} & set(FLAGS["11.1"]["flags"])  # only the safety parser keeps --int8


def test_a_trtexec_benchmark_reads_its_times_summary_and_profile():
    """The device's bench result from the three files one trtexec run writes (real outputs of TensorRT 10.16 and trex)."""
    times = json.loads((TRTEXEC / "trex-resnet-fp32.timing.json").read_text())
    log = (TRTEXEC / "trt101601-bench.log").read_text()
    profile = json.loads((TRTEXEC / "trex-resnet-qat-residual.profile.json").read_text())
    stats = bench_stats(times, log, profile, warmup=3, batch=4)
    assert stats.iterations == len(times) - 3 and stats.source == "trtexec --exportTimes"
    assert stats.median_ms == pytest.approx(float(np.median([t["latencyMs"] for t in times[3:]])))
    assert stats.gpu_compute_median_ms == parse_performance_summary(log).sections["GPU Compute Time"]["median"]
    assert stats.layers == parse_profile(profile) and stats.layers[0].time_ms == max(e.get("timeMs", 0) for e in profile)
    bare = bench_stats(times, "no summary in this log", None, warmup=3, batch=4)
    assert bare.gpu_compute_median_ms is None and bare.layers == [] and bare.median_ms == stats.median_ms
