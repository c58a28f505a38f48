"""Per-node verdicts on both sides of every GPU and DLA limit, on small graphs built here."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from edgeq.check import NodeResult, check_model
from tests.check_graphs import concat, conv, finish, pool, resize, single, target

ORIN, XAVIER = "jetson-orin", "jetson-xavier"


def node(model, target_name: str = ORIN, dla: bool = True) -> NodeResult:
    """The first non-Constant node's result on the target (DLA core 0 when ``dla``)."""
    report = check_model(model, target(target_name), dla_core=0 if dla else None)
    return next(n for n in report.nodes if n.op != "Constant")


def dla_reason(result: NodeResult) -> str:
    return "; ".join(r.message for r in result.dla_reasons)


@pytest.mark.parametrize(("kernel", "pad", "expected"), [(32, 15, "dla"), (33, 16, "gpu-fallback")])
def test_conv_kernel_32_runs_on_dla_33_does_not(kernel, pad, expected):
    result = node(conv(kernel=kernel, pad=pad))
    assert result.verdict == "int8"
    assert result.dla == expected
    if expected == "gpu-fallback":
        assert "Conv kernel 33 > 32" in dla_reason(result)


@pytest.mark.parametrize(("stride", "expected"), [(8, "dla"), (9, "gpu-fallback")])
def test_conv_stride_limit_is_8(stride, expected):
    result = node(conv(kernel=9, pad=4, stride=stride))
    assert result.dla == expected
    assert ("Conv stride 9 > 8" in dla_reason(result)) == (expected == "gpu-fallback")


@pytest.mark.parametrize(("pad", "expected"), [(2, "dla"), (3, "gpu-fallback")])
def test_conv_padding_must_be_below_the_kernel(pad, expected):
    result = node(conv(kernel=3, pad=pad))
    assert result.dla == expected
    if expected == "gpu-fallback":
        assert "Conv padding 3 is not smaller than its kernel 3" in dla_reason(result)


@pytest.mark.parametrize(("dilation", "expected"), [(32, "dla"), (33, "gpu-fallback")])
def test_conv_dilation_limit_is_32(dilation, expected):
    assert node(conv(kernel=2, pad=1, dilation=dilation, hw=80)).dla == expected


@pytest.mark.parametrize(("cout", "expected"), [(8192, "dla"), (8200, "gpu-fallback")])
def test_conv_output_maps_at_most_8192(cout, expected):
    result = node(conv(kernel=1, pad=0, cin=4, cout=cout, hw=2))
    assert result.dla == expected
    assert ("8200 output channels > 8192" in dla_reason(result)) == (expected == "gpu-fallback")


@pytest.mark.parametrize(("per_group", "verdict", "dla"), [(4, "int8", "dla"), (8, "int8", "dla"), (6, "fallback", "gpu-fallback")])
def test_int8_grouped_conv_needs_channels_per_group_multiple_of_4(per_group, verdict, dla):
    result = node(conv(group=2, cin=2 * per_group, cout=2 * per_group))
    assert result.verdict == verdict
    assert result.dla == dla
    if verdict == "fallback":
        assert "channels per group to be a multiple of 4, found 6" in result.reasons[0].message


def test_depthwise_conv_is_not_held_to_the_grouping_limit():
    result = node(conv(group=8, cin=8, cout=8))
    assert (result.verdict, result.dla) == ("int8", "dla")


@pytest.mark.parametrize(("pad", "groups", "expected"), [(0, 1, "dla"), (1, 1, "gpu-fallback"), (0, 2, "gpu-fallback")])
def test_deconvolution_needs_padding_0_and_one_group(pad, groups, expected):
    result = node(conv(kernel=2, stride=2, pad=pad, group=groups, transpose=True))
    assert result.verdict == "int8"
    assert result.dla == expected


@pytest.mark.parametrize(("window", "expected"), [(8, "dla"), (9, "gpu-fallback")])
def test_pool_window_limit_is_8(window, expected):
    result = node(pool(window=window, stride=1))
    assert result.verdict == "int8"
    assert result.dla == expected
    if expected == "gpu-fallback":
        assert "MaxPool window 9 > 8" in dla_reason(result)


@pytest.mark.parametrize(("stride", "pad", "expected"), [(16, 7, "dla"), (17, 0, "gpu-fallback"), (2, 8, "gpu-fallback")])
def test_pool_stride_at_most_16_and_padding_at_most_7(stride, pad, expected):
    assert node(pool("AveragePool", window=8, stride=stride, pad=pad, hw=80)).dla == expected


@pytest.mark.parametrize(("axis", "expected"), [(1, "dla"), (-3, "dla"), (2, "gpu-fallback"), (0, "gpu-fallback")])
def test_concat_on_dla_only_along_channels(axis, expected):
    result = node(concat(axis))
    assert result.verdict == "int8-passthrough"
    assert result.dla == expected
    if expected == "gpu-fallback":
        assert "Concat not on the channel axis" in dla_reason(result)


@pytest.mark.parametrize(("scale", "expected"), [(2.0, "dla"), (1.5, "gpu-fallback"), (32.0, "dla"), (33.0, "gpu-fallback")])
def test_resize_scales_must_be_integers_up_to_32(scale, expected):
    result = node(resize(scale))
    assert result.verdict == "fallback"  # Resize is FP16/FP32 on the GPU
    assert result.dla == expected
    if scale == 1.5:
        assert "Resize scale 1.5 not an integer" in dla_reason(result)


@pytest.mark.parametrize(("scale", "expected"), [(4.0, "dla"), (5.0, "gpu-fallback")])
def test_linear_resize_scales_up_to_4(scale, expected):
    assert node(resize(scale, mode="linear", transform="half_pixel")).dla == expected


def test_resize_with_an_unsupported_coordinate_mode_stays_on_gpu():
    result = node(resize(2.0, transform="align_corners"))
    assert result.dla == "gpu-fallback"
    assert "nearest/align_corners/floor" in dla_reason(result)


@pytest.mark.parametrize(("target_name", "expected"), [(ORIN, "dla"), (XAVIER, "gpu-fallback")])
def test_softmax_has_dla_on_orin_not_on_xavier(target_name, expected):
    result = node(single("Softmax", {"x": [1, 10, 1, 1]}, axis=1), target_name)
    assert result.verdict == "fallback"
    assert result.dla == expected
    if expected == "gpu-fallback":
        assert "Softmax has no DLA on Xavier" in dla_reason(result)


@pytest.mark.parametrize(("op", "target_name", "expected", "disputed"), [
    ("Add", ORIN, "dla", False), ("Sub", XAVIER, "dla", False), ("Max", ORIN, "dla", False),
    ("Div", XAVIER, "gpu-fallback", False),  # 8.x on Jetson: DLA-SW lists Div through TensorRT only as of 8.6.12
    ("Div", ORIN, "dla", True), ("Pow", ORIN, "dla", True),  # 10.x: the DLA page lists them
    ("Min", XAVIER, "dla", True), ("Min", ORIN, "dla", False)])
def test_dla_elementwise_follows_the_source_chosen_for_each_tensorrt_family(op, target_name, expected, disputed):
    result = node(single(op, {"a": [1, 8, 4, 4], "b": [1, 8, 4, 4]}), target_name)
    assert result.dla == expected
    assert bool(result.dla_disputed) is disputed
    if disputed:
        assert "include/NvInfer.h line" in result.dla_disputed


@pytest.mark.parametrize(("target_name", "release", "line"), [(XAVIER, "release/8.5", 1598), (ORIN, "release/10.3", 1347)])
def test_leaky_relu_on_dla_is_marked_disputed_with_both_sources(target_name, release, line):
    result = node(single("LeakyRelu", {"x": [1, 8, 4, 4]}), target_name)
    assert result.dla == "dla"
    assert f"NVIDIA/TensorRT {release} include/NvInfer.h line {line}" in result.dla_disputed
    report = check_model(single("LeakyRelu", {"x": [1, 8, 4, 4]}), target(target_name), dla_core=0)
    assert report.model_dump(mode="json")["dla_disputed"] == ["leakyrelu"]


@pytest.mark.parametrize(("constant", "expected"), [(True, "dla"), (False, "gpu-fallback")])
def test_dla_matmul_needs_constant_weights(constant, expected):
    weights = {"w": np.ones((16, 4))} if constant else None
    inputs = {"x": [1, 16]} if constant else {"x": [1, 16], "w": [16, 4]}
    assert node(single("MatMul", inputs, weights)).dla == expected


@pytest.mark.parametrize(("step", "expected"), [(1, "dla"), (2, "gpu-fallback")])
def test_dla_slices_with_stride_1(step, expected):
    constants = {"starts": np.array([0]), "ends": np.array([8]), "axes": np.array([2]), "steps": np.array([step])}
    assert node(single("Slice", {"x": [1, 8, 16, 16]}, constants)).dla == expected


def test_dynamic_shape_keeps_nodes_off_dla():
    result = node(conv(batch="N", hw=16))
    assert result.verdict == "int8"
    assert result.dla == "gpu-fallback"
    assert "dynamic shape" in dla_reason(result)


@pytest.mark.parametrize(("zero_point", "expected"), [(0, "int8-passthrough"), (3, "unsupported")])
def test_qdq_zero_point_must_be_zero(zero_point, expected):
    constants = {"scale": np.array(0.1, dtype=np.float32), "zp": np.array(zero_point, dtype=np.int8)}
    assert node(single("QuantizeLinear", {"x": [1, 8]}, constants, opset=13), dla=False).verdict == expected


@pytest.mark.parametrize(("target_name", "expected"), [("jetson-xavier", "fallback"), (ORIN, "int8")])
def test_matmul_int8_only_from_tensorrt_10(target_name, expected):
    assert node(single("MatMul", {"x": [1, 16]}, {"w": np.ones((16, 4))}), target_name, dla=False).verdict == expected


@pytest.mark.parametrize(("dilation", "expected"), [(1, "int8"), (2, "unsupported")])
def test_tensorrt_10_parser_rejects_dilated_pooling(dilation, expected):
    model = single("MaxPool", {"x": [1, 8, 16, 16]}, kernel_shape=[2, 2], dilations=[dilation, dilation])
    assert node(model, dla=False).verdict == expected


def test_parser_rejects_qlinearconv_on_every_tensorrt():
    scalars = {"xs": np.array(0.1, np.float32), "xz": np.array(0, np.uint8), "ws": np.array(0.1, np.float32),
               "wz": np.array(0, np.uint8), "ys": np.array(0.1, np.float32), "yz": np.array(0, np.uint8)}
    weights = {"w": np.ones((8, 8, 3, 3), np.uint8)}
    qconv = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="qconv")
    model = finish([qconv], {"x": [1, 8, 8, 8]}, "y", {**scalars, **weights}, elem_type=TensorProto.UINT8)
    for name in ("jetson-nano", "jetson-xavier", ORIN, "jetson-orin-trt11"):
        report = check_model(model, target(name))
        assert report.nodes[0].verdict == "unsupported"
        assert "rejects QLinearConv" in report.nodes[0].reasons[0].message


@pytest.mark.parametrize(("width", "expected"), [(8192, "dla"), (8193, "gpu-fallback")])
def test_dla_dimensions_at_most_8192(width, expected):
    result = node(single("Relu", {"x": [1, 4, 1, width]}))
    assert result.dla == expected
    assert ("a tensor dimension of 8193 > 8192" in dla_reason(result)) == (expected == "gpu-fallback")
