"""The wire between host and agent: the host's pydantic models and the device's dataclasses are one schema;
wrong answers are refused naming the device and the field; every recipe build field reaches the device."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edgeq import recipe as recipes
from edgeq.deploy import wire
from edgeq.deploy.plan import check_build, device_build_options
from edgeq.device import report as device_report
from edgeq.errors import DeviceError, InputError
from edgeq.targets import resolve
from tests.test_fleet_plan import BUILD, PROBE

PAIRS = [
    (wire.ProbeReport, device_report.ProbeReport),
    (wire.BuildOptions, device_report.BuildOptions),
    (wire.Artifact, device_report.Artifact),
    (wire.LayerPlacement, device_report.LayerPlacement),
    (wire.KernelCheck, device_report.KernelCheck),
    (wire.Int8Arithmetic, device_report.Int8Arithmetic),
    (wire.BuiltModel, device_report.BuiltModel),
    (wire.BuildReport, device_report.BuildReport),
    (wire.Comparison, device_report.Comparison),
    (wire.RunTiming, device_report.RunTiming),
    (wire.EvaluateReport, device_report.EvaluateReport),
    (wire.LayerTime, device_report.LayerTime),
    (wire.LatencyStats, device_report.LatencyStats),
    (wire.BenchReport, device_report.BenchReport),
    (wire.SmokeReport, device_report.SmokeReport),
    (wire.Activation, device_report.Activation),
    (wire.ActivationReport, device_report.ActivationReport),
    (wire.StatusReport, device_report.StatusReport),
    (wire.ExportReport, device_report.ExportReport),
    (wire.ImportReport, device_report.ImportReport),
    (wire.GcReport, device_report.GcReport),
]


@pytest.mark.parametrize(("host", "device"), PAIRS, ids=lambda c: c.__name__)
def test_host_and_device_models_have_the_same_fields(host: type, device: type) -> None:
    device_fields = {f.name: f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                     for f in dataclasses.fields(device)}
    host_fields = {name: info.is_required() for name, info in host.model_fields.items()}
    assert host_fields == device_fields


def test_a_wrong_type_names_the_device_and_the_field() -> None:
    with pytest.raises(DeviceError) as caught:
        wire.parse_answer(wire.ProbeReport, {**PROBE, "backends": 7}, "edgeq@10.0.0.9", "agent `probe`")
    assert caught.value.host == "edgeq@10.0.0.9"
    assert "agent `probe` answered a wrong value: backends: input should be a valid list (found 7)" in caught.value.message


def test_a_number_sent_as_text_or_out_of_range_is_refused() -> None:
    stats = {"iterations": 200, "batch": 1, "min_ms": 1.0, "median_ms": 1.2, "p90_ms": 1.4, "p99_ms": 1.9, "mean_ms": 1.3,
             "max_ms": 2.0, "throughput_per_s": 800.0}
    bench = {"engine_id": "e1", "backend": "onnxruntime", "warmup": 10, "int8": stats, "fp32": stats, "speedup": 1.0}
    assert wire.parse_answer(wire.BenchReport, bench, "d", "agent `bench`").int8.p99_ms == 1.9
    with pytest.raises(DeviceError, match=r"int8\.p99_ms: input should be a valid number \(found \"1.9\"\)"):
        wire.parse_answer(wire.BenchReport, {**bench, "int8": {**stats, "p99_ms": "1.9"}}, "d", "agent `bench`")
    with pytest.raises(DeviceError, match=r"fp32\.median_ms: input should be greater than or equal to 0"):
        wire.parse_answer(wire.BenchReport, {**bench, "fp32": {**stats, "median_ms": -1.0}}, "d", "agent `bench`")
    with pytest.raises(DeviceError, match="engine_id: string should match pattern"):
        wire.parse_answer(wire.BenchReport, {**bench, "engine_id": "../x"}, "d", "agent `bench`")


def test_a_trtexec_bench_shows_gpu_compute_and_the_slowest_layers_with_their_precision() -> None:
    from rich.console import Console

    from edgeq.report.deploy_view import LAYERS_SHOWN, _latency_table, layer_times_table

    stats = {"iterations": 200, "batch": 1, "min_ms": 1.0, "median_ms": 1.2, "p90_ms": 1.4, "p99_ms": 1.9, "mean_ms": 1.3,
             "max_ms": 2.0, "throughput_per_s": 800.0, "source": "trtexec --exportTimes"}
    layers = [{"name": f"conv{i} + relu{i}" if i else "[red]x[/red]", "time_ms": 10.0 - i, "average_ms": (10.0 - i) / 200,
               "median_ms": (10.0 - i) / 200, "percentage": 10.0 - i} for i in range(10)]
    bench = {"engine_id": "e1", "backend": "tensorrt", "warmup": 10, "speedup": 2.0, "fp32": stats,
             "int8": {**stats, "gpu_compute_median_ms": 0.9, "layers": layers}}
    parsed = wire.parse_answer(wire.BenchReport, bench, "d", "agent `bench`")
    placements = [wire.LayerPlacement(name="conv1 + relu1", layer_type="CaskConvolution", precision="int8", device="GPU")]
    table = layer_times_table(parsed.int8, placements)
    assert table is not None and table.title == f"Slowest INT8 engine layers (trtexec profile run, {LAYERS_SHOWN} of 10)"
    console = Console(width=200, record=True)
    console.print(_latency_table(parsed.fp32, parsed.int8, parsed.speedup), table)
    text = console.export_text()
    assert "GPU compute median ms" in text and "0.900" in text
    rows = [line for line in text.splitlines() if "relu" in line or "[red]" in line]
    assert len(rows) == LAYERS_SHOWN - 1 + 1 and "[red]x[/red]" in rows[0]  # device text shown literally, slowest first
    assert "int8" in next(line for line in rows if "conv1 + relu1" in line)
    assert layer_times_table(wire.parse_answer(wire.LatencyStats, stats, "d", "bench"), placements) is None  # no profile
    with pytest.raises(DeviceError, match=r"int8\.layers\.0\.percentage"):
        wire.parse_answer(wire.BenchReport, {**bench, "int8": {**stats, "layers": [{**layers[0], "percentage": 250}]}},
                          "d", "agent `bench`")


def test_build_report_round_trip_and_unknown_keys() -> None:
    parsed = wire.parse_answer(wire.BuildReport, {**BUILD, "added_by_a_newer_agent": 1}, "d", "build.json")
    assert parsed.options.precision == "int8" and parsed.engine.seconds == 1.9


def _recipe(tmp_path: Path, **build: object) -> recipes.Recipe:
    data = {
        "name": "r", "model": "m.onnx",
        "inputs": [{"name": "image", "shape": ["N", 3, 8, 8]}, {"name": "scale", "shape": [1, 2], "layout": "NC"}],
        "calibration": {"path": "c.npz"}, "validation": {"path": "v.npz"}, "build": build,
    }
    return recipes.parse(data, tmp_path / "recipe.yaml")


class _Calibration:
    """The calibrated files a plan names (only their paths matter here)."""

    def __init__(self, folder: Path) -> None:
        self.artifacts = type("Artifacts", (), {"fp32_model": folder / "model.fp32.onnx", "qdq_model": folder / "model.qdq.onnx",
                                                "cache": folder / "calibration.cache"})()


def test_every_recipe_build_field_reaches_the_device(tmp_path: Path) -> None:
    non_default = {"precision": "int8", "fp16_fallback": False, "quantization": "implicit", "dla_core": 1,
                   "gpu_fallback": False, "workspace_mb": 2048, "builder_optimization_level": 4}
    assert set(non_default) == set(recipes.BuildOptions.model_fields), "a recipe build field this test does not cover"
    recipe = _recipe(tmp_path, **non_default)
    target = resolve("jetson-orin")
    options = device_build_options(recipe, target, check_build(recipe, target), _Calibration(tmp_path))  # type: ignore[arg-type]
    sent = json.loads(options.to_json())
    for name, value in non_default.items():
        assert sent[name] == value, name
    assert sent["cache"].endswith("calibration.cache") and sent["qdq"] is None
    assert sent["shapes"] == {"image": [1, 3, 8, 8], "scale": [1, 2]}  # every input, symbolic dims as 1
    # the device reads exactly what the host sends
    assert dataclasses.asdict(device_report.BuildOptions.parse(sent)) == sent


def test_builder_optimization_level_is_refused_before_tensorrt_8_6(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, builder_optimization_level=2)
    with pytest.raises(InputError, match=r"build\.builder_optimization_level: TensorRT 8\.5\.2 has no builder optimization level"):
        check_build(recipe, resolve("jetson-xavier"))
    assert check_build(recipe, resolve("jetson-orin")) == "explicit"


def test_each_backend_maps_the_builder_optimization_level(tmp_path: Path) -> None:
    from edgeq.device.errors import AgentError
    from edgeq.device.trt_api import plan_api_build
    from edgeq.device.trt_backend import TensorRTBackend
    from edgeq.device.trt_rules import plan_precision
    from edgeq.device.trt_version import TrtVersion
    from edgeq.device.trtexec_command import build_command

    def backend(version: str) -> TensorRTBackend:
        probe = {**PROBE, "tensorrt_version": version}
        return TensorRTBackend(device_report.ProbeReport(**probe))

    options = device_report.BuildOptions(model="m.onnx", qdq="m.qdq.onnx", quantization="explicit", precision="int8",
                                         builder_optimization_level=1)
    specs = backend("10.3.0").specs(options, str(tmp_path), str(tmp_path))
    assert [s.builder_optimization_level for s in specs] == [1, 1]  # the FP32 reference is built alike
    version = TrtVersion(10, 3, 0)
    plan = plan_precision(specs[0], version, "8.7")
    assert "--builderOptimizationLevel=1" in build_command("trtexec", specs[0], plan, version)
    assert plan_api_build(specs[0], plan, version).builder_optimization_level == 1
    with pytest.raises(AgentError, match=r"builder_optimization_level needs TensorRT 8\.6 or later, this device has 8\.5\.2"):
        backend("8.5.2").specs(options, str(tmp_path), str(tmp_path))


def test_smoke_data_carries_every_input(tmp_path: Path) -> None:
    """A two-input model: the smoke file holds both inputs, by name, and the host's FP32 outputs for them."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from edgeq.calibrate.report import Artifacts
    from edgeq.deploy.plan import SMOKE_SAMPLES, write_smoke_data

    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "scale"], ["scaled"]),
         helper.make_node("ReduceSum", ["scaled", "axes"], ["out"], keepdims=0)],
        "two_inputs",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["N", 1, 1, 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])],
    )
    artifacts = Artifacts.in_folder(tmp_path, with_cache=False)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), artifacts.fp32_model)
    rng = np.random.default_rng(0)
    image, scale = rng.standard_normal((12, 3, 8, 8), np.float32), rng.standard_normal((12, 1, 1, 1), np.float32)
    np.savez(artifacts.validation, image=image, scale=scale, labels=np.zeros(12, np.int64))
    calibration = type("Calibration", (), {"artifacts": artifacts, "folder": tmp_path})()
    recipe = _recipe(tmp_path)
    recipe = recipe.model_copy(update={"inputs": [recipe.inputs[0], recipe.inputs[1].model_copy(update={"shape": ["N", 1, 1, 1]})]})
    path = write_smoke_data(recipe, calibration)  # type: ignore[arg-type]
    with np.load(path) as smoke:
        assert sorted(smoke.files) == ["expected", "image", "scale"]
        np.testing.assert_array_equal(smoke["scale"], scale[:SMOKE_SAMPLES])
        np.testing.assert_allclose(smoke["expected"], (image * scale).sum(axis=(1, 2, 3))[:SMOKE_SAMPLES], rtol=1e-5)
