"""Whole-model gates, MAC shares and the report's JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from edgeq.check import CheckReport, check_model
from edgeq.errors import InputError
from tests.check_graphs import conv, finish, single, target


def gate(report: CheckReport, gate_id: str):
    return next(g for g in report.gates if g.id == gate_id)


@pytest.mark.parametrize(("name", "cc"), [("jetson-nano", "5.3"), ("jetson-tx2", "6.2")])
def test_no_fast_int8_blocks_when_int8_is_asked(name, cc):
    report = check_model(conv(), target(name))
    found = gate(report, "fast_int8")
    assert (found.status, found.blocking) == ("fail", True)
    assert cc in found.message and "no fast INT8" in found.message
    assert not report.ok
    assert report.nodes[0].verdict == "fallback"
    assert report.shares.int8 == 0


def test_fp16_build_on_nano_passes():
    report = check_model(conv(opset=13), target("jetson-nano"), int8=False)
    assert report.ok
    assert gate(report, "fast_int8").status == "n/a"


@pytest.mark.parametrize(("opset", "status"), [(17, "pass"), (18, "fail")])
def test_opset_17_builds_on_tensorrt_86_and_18_does_not(opset, status):
    trt86 = target("jetson-orin", tensorrt="8.6.2")
    report = check_model(conv(opset=opset), trt86)
    assert report.rule_files == ["gpu-trt8.6"]
    assert gate(report, "opset").status == status
    assert report.ok == (status == "pass")


@pytest.mark.parametrize(("opset", "status"), [(8, "fail"), (9, "pass"), (20, "pass"), (21, "fail")])
def test_tensorrt_10_parser_takes_opsets_9_to_20(opset, status):
    model = single("Relu", {"x": [1, 8]}, opset=opset)
    assert gate(check_model(model, target("jetson-orin")), "opset").status == status


def test_rejected_op_is_a_blocker_that_names_the_node():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("DynamicQuantizeLinear", ["r"], ["y", "s", "z"], name="dq")]
    report = check_model(finish(nodes, {"x": [1, 8]}, "y"), target("jetson-orin"))
    found = gate(report, "parser")
    assert found.status == "fail" and found.blocking
    assert "DynamicQuantizeLinear (dq)" in found.message
    assert report.counts["unsupported"] == 1 and report.counts["int8"] == 1


def test_parser_columns_differ_by_version():
    model = single("LayerNormalization", {"x": [1, 4, 8]}, {"scale": np.ones(8)}, axis=-1)
    assert check_model(model, target("jetson-xavier")).nodes[0].verdict == "unsupported"  # 8.5: not in the parser
    assert check_model(model, target("jetson-orin", tensorrt="8.6.2")).nodes[0].verdict == "fallback"


@pytest.mark.parametrize(("per_group", "status"), [(4, "pass"), (6, "warn")])
def test_grouped_conv_gate_warns_without_blocking(per_group, status):
    report = check_model(conv(group=2, cin=2 * per_group, cout=2 * per_group), target("jetson-orin"))
    assert gate(report, "grouped_conv_int8").status == status
    assert report.ok


@pytest.mark.parametrize(("batch", "ok"), [(1, True), ("N", False)])
def test_dynamic_shapes_block_dla_only(batch, ok):
    model = conv(batch=batch)
    assert check_model(model, target("jetson-orin")).ok
    report = check_model(model, target("jetson-orin"), dla_core=1)
    assert gate(report, "dla_static_shapes").status == ("pass" if ok else "fail")
    assert report.ok == ok
    assert report.dynamic_inputs == ({} if ok else {"x": "Nx8x64x64"})


def qdq_conv():
    constants = {"s": np.array(0.1, np.float32), "z": np.array(0, np.int8), "w": np.ones((8, 8, 3, 3))}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq"),
             helper.make_node("Conv", ["dq", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    return finish(nodes, {"x": [1, 8, 16, 16]}, "y", constants, opset=13)


@pytest.mark.parametrize(("name", "family"), [("jetson-xavier", "8.5"), ("jetson-orin", "10")])
def test_tensorrt_8_and_10_dla_refuse_qdq_models_and_take_the_cache(name, family):
    report = check_model(qdq_conv(), target(name), dla_core=0)
    assert report.quantization == "explicit"
    found = gate(report, "dla_qdq")
    assert found.status == "fail" and found.blocking and not report.ok
    assert f"TensorRT {family}" in found.message and "calibration cache" in found.message
    assert "qdq-translator" in found.source  # no NVIDIA source says TensorRT 10.0-10.7 DLA takes Q/DQ
    assert check_model(conv(), target(name), dla_core=0).ok


def test_tensorrt_11_4_1_dla_takes_qdq_models_on_agx_orin():
    assert check_model(qdq_conv(), target("jetson-orin-trt11"), dla_core=0).ok


def test_dla_on_jetpack_7_2_is_unavailable_with_its_source_and_the_plan_is_gpu_only():
    report = check_model(conv(), target("agx-orin-jp7.2"), dla_core=0)
    found = gate(report, "dla_available")
    assert (found.status, found.blocking) == ("warn", False) and report.ok
    assert "TensorRT 10.16.2 has no DLA" in found.message and "GPU only" in found.message
    assert "Orin DLA is not supported at this time" in found.message and "10.7 was the last 10.x release" in found.message
    assert report.dla_core is None and report.rule_files == ["gpu-trt10"] and report.shares.dla is None
    assert all(n.dla is None for n in report.nodes)
    assert gate(check_model(conv(), target("jetson-orin"), dla_core=0), "dla_available").status == "pass"


def test_no_dla_hardware_is_still_bad_input():
    with pytest.raises(InputError, match="has no DLA"):
        check_model(conv(), target("orin-nano-jp7.2"), dla_core=0)


def attention(constant_weights: bool = True):
    """x (1, 16, 32) @ w (32, 32) + b (32,): the bias is broadcast from rank 1 to rank 3 by the parser."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
             helper.make_node("Add", ["m", "b"], ["y"], name="bias")]
    return finish(nodes, {"x": [1, 16, 32]}, "y", {"w": np.ones((32, 32)), "b": np.ones(32)}, opset=17)


def test_matmul_models_in_implicit_mode_on_tensorrt_10_warn_about_parser_made_tensors():
    report = check_model(attention(), target("jetson-orin"))
    found = gate(report, "implicit_parser_tensors")
    assert (found.status, found.blocking) == ("warn", False) and report.ok
    assert "1 MatMul node(s) and 1 broadcast" in found.message and "ONNXTRT_Broadcast" in found.message
    assert "Hanner123/LLM_PIPELINE" in found.source
    assert not any(g.id == "implicit_parser_tensors" for g in check_model(conv(), target("jetson-orin")).gates)
    assert not any(g.id == "implicit_parser_tensors" for g in check_model(attention(), target("jetson-xavier")).gates)


def test_tensorrt_11_has_only_explicit_int8():
    trt11 = target("jetson-orin-trt11")
    plain = check_model(conv(), trt11)
    assert plain.rule_files == ["gpu-trt11"] and plain.quantization == "explicit"
    assert gate(plain, "explicit_int8").status == "warn"
    assert "Q/DQ" in gate(plain, "explicit_int8").message
    assert gate(check_model(qdq_conv(), trt11), "explicit_int8").status == "pass"
    assert gate(check_model(conv(), target("jetson-orin")), "explicit_int8").status == "pass"


def test_dla_on_a_target_without_dla_is_bad_input():
    with pytest.raises(InputError, match="has no DLA"):
        check_model(conv(), target("jetson-orin-nano"), dla_core=0)
    with pytest.raises(InputError, match="DLA cores 0 to 1"):
        check_model(conv(), target("jetson-orin"), dla_core=2)


def test_macs_and_shares_follow_the_verdicts():
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "w2"], ["b"], name="conv2", kernel_shape=[9, 9], pads=[0, 0, 0, 0]),
             helper.make_node("Flatten", ["b"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "w3"], ["y"], name="fc")]
    weights = {"w1": np.ones((16, 8, 3, 3)), "w2": np.ones((16, 16, 9, 9)), "w3": np.ones((16 * 8 * 8, 10))}
    model = finish(nodes, {"x": [1, 8, 16, 16]}, "y", weights)
    conv1 = 16 * 16 * 16 * 8 * 3 * 3  # output elements x (input channels x kernel)
    conv2 = 16 * 8 * 8 * 16 * 9 * 9
    fc = 10 * 16 * 8 * 8
    xavier = check_model(model, target("jetson-xavier"), dla_core=0)
    assert xavier.shares.total_macs == conv1 + conv2 + fc
    assert xavier.shares.int8_macs == conv1 + conv2  # MatMul is FP16/FP32 on TensorRT 8.5
    assert xavier.shares.dla_macs == conv1 + conv2 + fc
    orin = check_model(model, target("jetson-orin"), dla_core=0)
    assert orin.shares.int8 == 1.0


def test_unknown_spatial_dims_leave_macs_unknown():
    report = check_model(conv(batch="N"), target("jetson-orin"))
    assert report.shares.total_macs == 8 * 64 * 64 * 8 * 9  # symbolic batch counts as 1
    model = single("Conv", {"x": ["N", 8, "H", "W"]}, {"w": np.ones((8, 8, 3, 3))})
    unknown = check_model(model, target("jetson-orin"))
    assert unknown.nodes[0].macs is None and unknown.shares.unknown_mac_nodes == 1


def test_json_has_every_node_with_verdict_reasons_gates_and_shares():
    report = check_model(conv(group=2, cin=12, cout=12), target("jetson-orin"), dla_core=0)
    data = json.loads(json.dumps(report.model_dump(mode="json")))
    assert data["ok"] is True and data["blockers"] == []
    assert [n["name"] for n in data["nodes"]] == ["conv"]
    node = data["nodes"][0]
    assert node["verdict"] == "fallback" and node["dla"] == "gpu-fallback"
    assert node["reasons"][0]["rule"] == "gpu.conv.grouped-int8-channels" and node["reasons"][0]["source"]
    assert {g["id"] for g in data["gates"]} >= {"fast_int8", "opset", "parser", "dla_static_shapes"}
    assert data["shares"]["int8"] == 0 and data["counts"]["fallback"] == 1


def test_local_target_uses_onnxruntime_rules():
    report = check_model(conv(), target("local"))
    assert report.rule_files == ["cpu-onnxruntime"] and report.engine == "ONNX Runtime (CPU)"
    assert report.nodes[0].verdict == "int8" and report.ok
    softplus = check_model(single("Softplus", {"x": [1, 8]}), target("local"))
    assert softplus.nodes[0].verdict == "fallback" and softplus.ok


def test_deploy_preflight_stops_on_the_blocking_gates_before_calibrating(tmp_path) -> None:
    from edgeq import recipe as recipe_module
    from edgeq import targets
    from edgeq.deploy.plan import make_plan
    from edgeq.errors import GateError
    from tests.calibrate_nets import fire_net, write_recipe

    recipe = recipe_module.load(write_recipe(tmp_path, fire_net()))
    with pytest.raises(GateError, match=r"found blockers for nano-jp4\.6:\n  - .*: .*no fast INT8"):
        make_plan(recipe, targets.resolve("jetson-nano"), progress=False)
    assert not (tmp_path / "edgeq-out").exists()  # nothing calibrated
