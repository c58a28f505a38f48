"""prepare() and excluded_tensors() on small graphs that each carry one trait of models from the field."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.calibrate.policy import CONCAT_RANGE_RATIO, excluded_tensors
from edgeq.calibrate.prepare import prepare
from edgeq.errors import InputError

RNG = np.random.default_rng(7)


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _const_node(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array)))


def _model(nodes, inputs, outputs, inits=(), opset=13) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset <= 13 else 8
    onnx.checker.check_model(model)
    return model


def _vi(name: str, shape, dtype=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _assert_same_outputs(original, prepared, feeds, atol=1e-5):
    assert [i.name for i in prepared.graph.input] == [i.name for i in original.graph.input]
    assert [o.name for o in prepared.graph.output] == [o.name for o in original.graph.output]
    onnx.checker.check_model(prepared)
    for want, got in zip(_run(original, feeds), _run(prepared, feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _bn_params(channels: int) -> list[TensorProto]:
    return [
        _init("gamma", RNG.uniform(0.5, 2.0, channels).astype(np.float32)),
        _init("beta", RNG.normal(0, 1, channels).astype(np.float32)),
        _init("mean", RNG.normal(0, 1, channels).astype(np.float32)),
        _init("var", RNG.uniform(0.1, 3.0, channels).astype(np.float32)),
    ]


def test_constant_node_weights_become_initializers():
    weight = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    bias = RNG.normal(size=4).astype(np.float32)
    nodes = [
        _const_node("w", weight),
        _const_node("b", bias),
        _const_node("two", np.float32(2.0)),
        helper.make_node("Mul", ["w", "two"], ["w2"]),  # a constant subexpression feeding the weight
        helper.make_node("Conv", ["x", "w2", "b"], ["y"], pads=[1, 1, 1, 1]),
    ]
    model = _model(nodes, [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 4, 8, 8])])
    prepared = prepare(model)
    assert _ops(prepared.model) == ["Conv"]
    inits = {i.name: numpy_helper.to_array(i) for i in prepared.model.graph.initializer}
    conv = prepared.model.graph.node[0]
    np.testing.assert_allclose(inits[conv.input[1]], weight * 2)
    assert any("3 Constant node(s) into initializers" in note for note in prepared.notes)
    assert any("1 node(s) that computed only from constants" in note for note in prepared.notes)
    _assert_same_outputs(model, prepared.model, {"x": RNG.normal(size=(1, 3, 8, 8)).astype(np.float32)})


def test_opset_11_is_upgraded_to_13():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Squeeze", ["c"], ["y"], axes=[3]),  # axes became an input in opset 13
    ]
    inits = [_init("w", RNG.normal(size=(2, 3, 1, 4)).astype(np.float32))]
    model = _model(nodes, [_vi("x", [1, 3, 5, 4])], [_vi("y", [1, 2, 5])], inits, opset=11)
    prepared = prepare(model)
    assert prepared.model.opset_import[0].version == 13
    assert any("opset from 11 to 13" in note for note in prepared.notes)
    _assert_same_outputs(model, prepared.model, {"x": RNG.normal(size=(1, 3, 5, 4)).astype(np.float32)})


def test_opset_upgrade_failure_names_the_model():
    node = helper.make_node("NoSuchOp", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [_vi("x", [1])], [_vi("y", [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    with pytest.raises(InputError, match=r"detector\.onnx: default opset 11 could not be upgraded to 13"):
        prepare(model, source="detector.onnx")


@pytest.mark.parametrize("group", [1, 2])
def test_batchnorm_folds_into_conv(group):
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], group=group),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], epsilon=1e-3),
    ]
    inits = [_init("w", RNG.normal(size=(6, 4 // group, 3, 3)).astype(np.float32)), _init("b", RNG.normal(size=6).astype(np.float32))]
    model = _model(nodes, [_vi("x", [2, 4, 7, 7])], [_vi("y", [2, 6, 5, 5])], inits + _bn_params(6))
    prepared = prepare(model)
    assert _ops(prepared.model) == ["Conv"]
    assert any("folded 1 BatchNormalization" in note for note in prepared.notes)
    _assert_same_outputs(model, prepared.model, {"x": RNG.normal(size=(2, 4, 7, 7)).astype(np.float32)})


@pytest.mark.parametrize("group", [1, 2])
def test_batchnorm_folds_into_conv_transpose_without_bias(group):
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w"], ["c"], group=group, strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"]),
    ]
    inits = [_init("w", RNG.normal(size=(4, 6 // group, 2, 2)).astype(np.float32))]
    model = _model(nodes, [_vi("x", [1, 4, 3, 3])], [_vi("y", [1, 6, 6, 6])], inits + _bn_params(6))
    prepared = prepare(model)
    assert _ops(prepared.model) == ["ConvTranspose"]
    _assert_same_outputs(model, prepared.model, {"x": RNG.normal(size=(1, 4, 3, 3)).astype(np.float32)})


@pytest.mark.parametrize("trans_b", [0, 1])
def test_batchnorm_folds_into_gemm(trans_b):
    shape_b = (5, 3) if trans_b else (3, 5)
    nodes = [
        helper.make_node("Gemm", ["x", "wb", "c"], ["g"], transB=trans_b, alpha=0.5, beta=2.0),
        helper.make_node("BatchNormalization", ["g", "gamma", "beta", "mean", "var"], ["y"]),
    ]
    inits = [_init("wb", RNG.normal(size=shape_b).astype(np.float32)), _init("c", RNG.normal(size=5).astype(np.float32))]
    model = _model(nodes, [_vi("x", [4, 3])], [_vi("y", [4, 5])], inits + _bn_params(5))
    prepared = prepare(model)
    assert _ops(prepared.model) == ["Gemm"]
    _assert_same_outputs(model, prepared.model, {"x": RNG.normal(size=(4, 3)).astype(np.float32)})


def test_batchnorm_that_cannot_fold_is_kept_and_explained():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "gamma", "beta", "mean", "var"], ["bn1"]),  # after Relu
        helper.make_node("Conv", ["bn1", "w2"], ["c2"]),
        helper.make_node("BatchNormalization", ["c2", "gamma", "beta", "mean", "var"], ["bn2"]),  # c2 used twice
        helper.make_node("Add", ["bn2", "c2"], ["y"]),
    ]
    inits = [_init("w", RNG.normal(size=(3, 3, 1, 1)).astype(np.float32)), _init("w2", RNG.normal(size=(3, 3, 1, 1)).astype(np.float32))]
    model = _model(nodes, [_vi("x", [1, 3, 4, 4])], [_vi("y", [1, 3, 4, 4])], inits + _bn_params(3))
    prepared = prepare(model)
    assert _ops(prepared.model).count("BatchNormalization") == 2
    notes = " | ".join(prepared.notes)
    assert "not produced by a Conv, ConvTranspose or Gemm" in notes
    assert "also used elsewhere" in notes
    _assert_same_outputs(model, prepared.model, {"x": RNG.normal(size=(1, 3, 4, 4)).astype(np.float32)})


def _if_model() -> onnx.ModelProto:
    def branch(name: str, factor: float) -> onnx.GraphProto:
        nodes = [
            helper.make_node("Conv", ["x", f"{name}_w"], [f"{name}_c"]),
            helper.make_node("Mul", [f"{name}_c", f"{name}_k"], [f"{name}_out"]),
        ]
        inits = [_init(f"{name}_w", RNG.normal(size=(2, 2, 1, 1)).astype(np.float32)), _init(f"{name}_k", np.float32(factor))]
        return helper.make_graph(nodes, name, [], [_vi(f"{name}_out", [1, 2, 3, 3])], inits)

    nodes = [
        helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
        helper.make_node("Greater", ["m", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["branch_out"], then_branch=branch("then", 2.0), else_branch=branch("else", -1.0)),
        helper.make_node("Relu", ["branch_out"], ["y"]),
    ]
    return _model(nodes, [_vi("x", [1, 2, 3, 3])], [_vi("y", [1, 2, 3, 3])], [_init("zero", np.float32(0.0))])


def test_if_subgraph_tensors_are_unquantizable_with_a_reason():
    model = _if_model()
    prepared = prepare(model)
    assert {"then_c", "then_out", "else_c", "else_out", "then_w"} <= set(prepared.unquantizable)
    assert "then_branch of If" in prepared.unquantizable["then_c"]
    assert "branch_out" not in prepared.unquantizable and "y" not in prepared.unquantizable
    assert any("stay in float" in note for note in prepared.notes)
    excluded = excluded_tensors(prepared.model, {"branch_out": 3.0, "y": 3.0, "x": 2.0})
    assert excluded["else_out"] == prepared.unquantizable["else_out"]
    assert "y" not in excluded and "branch_out" not in excluded and "x" not in excluded
    assert "bool" in excluded["cond"]
    _assert_same_outputs(model, prepared.model, {"x": RNG.normal(size=(1, 2, 3, 3)).astype(np.float32)})


def _detector_head() -> onnx.ModelProto:
    """Boxes in pixels next to sigmoid scores, joined by one Concat, then transposed (YOLO-style)."""
    nodes = [
        helper.make_node("Conv", ["x", "wbox"], ["box_raw"]),
        helper.make_node("Mul", ["box_raw", "stride"], ["boxes"]),
        helper.make_node("Conv", ["x", "wcls"], ["cls_raw"]),
        helper.make_node("Sigmoid", ["cls_raw"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["joined"], axis=1),
        helper.make_node("Transpose", ["joined"], ["y"], perm=[0, 2, 3, 1]),
        helper.make_node("Conv", ["x", "wa"], ["fire_a"]),
        helper.make_node("Conv", ["x", "wb"], ["fire_b"]),
        helper.make_node("Concat", ["fire_a", "fire_b"], ["fire"], axis=1),
    ]
    inits = [
        _init("wbox", RNG.normal(size=(4, 3, 1, 1)).astype(np.float32)),
        _init("wcls", RNG.normal(size=(2, 3, 1, 1)).astype(np.float32)),
        _init("wa", RNG.normal(size=(2, 3, 1, 1)).astype(np.float32)),
        _init("wb", RNG.normal(size=(2, 3, 1, 1)).astype(np.float32)),
        _init("stride", np.float32(32.0)),
    ]
    return _model(nodes, [_vi("x", [1, 3, 4, 4])], [_vi("y", [1, 4, 4, 6]), _vi("fire", [1, 4, 4, 4])], inits)


def test_box_and_score_concat_is_excluded_but_similar_ranges_are_not():
    model = prepare(_detector_head()).model
    amax = {"boxes": 310.0, "scores": 1.0, "joined": 310.0, "y": 310.0, "fire_a": 4.0, "fire_b": 9.0, "fire": 9.0, "x": 3.0}
    excluded = excluded_tensors(model, amax)
    assert "310x" in excluded["joined"] and "'scores'" in excluded["joined"]
    assert "Concat" in excluded["y"] and "Transpose" in excluded["y"]
    for name in ("boxes", "scores", "fire_a", "fire_b", "fire", "x"):
        assert name not in excluded
    ratio_just_below = dict(amax, boxes=CONCAT_RANGE_RATIO * 0.99)
    assert "joined" not in excluded_tensors(model, ratio_just_below)


def test_shape_computation_and_degenerate_ranges_are_excluded():
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus1"], ["new_shape"], axis=0),
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Reshape", ["r", "new_shape"], ["flat"]),
        helper.make_node("Cast", ["shape"], ["shape_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["pixels", "k"], ["scale_raw"]),  # float math feeding only Resize scales
        helper.make_node("Concat", ["ones2", "scale_raw"], ["scales"], axis=0),
        helper.make_node("Resize", ["x", "", "scales"], ["big"], mode="nearest"),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero_f"], ["dead"]),
        helper.make_node("ReduceSum", ["shape_f"], ["shape_f_sum"], keepdims=0),
        helper.make_node("Add", ["dead", "shape_f_sum"], ["y"]),
    ]
    inits = [
        _init("zero", np.int64(0)), _init("axes0", np.array([0], np.int64)), _init("minus1", np.array([-1], np.int64)),
        _init("k", np.float32(1.0)),
        _init("ones2", np.ones(2, np.float32)), _init("zero_f", np.float32(0.0)),
    ]
    inputs = [_vi("x", ["N", 3, 4, 4]), _vi("pixels", [2])]  # dynamic: Shape is not folded
    model = prepare(_model(nodes, inputs, [_vi("flat", ["N", 48]), _vi("y", [])], inits)).model
    amax = {"x": 1.0, "r": 1.0, "flat": 1.0, "big": 1.0, "total": 96.0, "dead": 0.0, "y": float("inf"), "scale_raw": 2.0, "pixels": 2.0}
    excluded = excluded_tensors(model, amax)
    assert excluded["shape"].startswith("int64 tensor")
    assert "computed from tensor shapes (Shape" in excluded["shape_f"]
    assert "input 2 of Resize" in excluded["scale_raw"]
    assert "only feeds shape inputs" in excluded["pixels"]
    assert "always zero" in excluded["dead"]
    assert "infinite or NaN" in excluded["y"]
    assert "computed from tensor shapes" in excluded["shape_f_sum"]
    for name in ("x", "r", "flat", "big", "total"):
        assert name not in excluded, (name, excluded.get(name))


def test_unnamed_nodes_get_unique_names_and_outputs_keep_theirs():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["y"], name="Relu_0")]
    model = _model(nodes, [_vi("x", [3])], [_vi("y", [3])])
    prepared = prepare(model)
    names = [n.name for n in prepared.model.graph.node]
    assert all(names) and len(set(names)) == len(names)
    _assert_same_outputs(model, prepared.model, {"x": RNG.normal(size=3).astype(np.float32)})


def test_ir3_model_with_initializers_listed_as_inputs_prepares() -> None:
    """IR 3 lists every initializer as a graph input; folding makes new initializers, and the inputs compared
    before and after are the ones the caller feeds."""
    nodes = [_const_node("two", np.float32(2.0)), helper.make_node("Mul", ["w", "two"], ["w2"]),
             helper.make_node("Conv", ["x", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [_vi("x", [1, 3, 4, 4]), _vi("w", [4, 3, 1, 1])], [_vi("y", [1, 4, 4, 4])],
                              [_init("w", RNG.normal(size=(4, 3, 1, 1)).astype(np.float32))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 3
    x = RNG.normal(size=(1, 3, 4, 4)).astype(np.float32)
    prepared = prepare(model, feeds=[{"x": x}])
    assert _ops(prepared.model) == ["Conv"] and [i.name for i in prepared.model.graph.input] == ["x"]
    onnx.checker.check_model(prepared.model)
    np.testing.assert_allclose(_run(prepared.model, {"x": x})[0], _run(model, {"x": x})[0], rtol=1e-5)


def test_recurrent_state_is_found_whatever_the_models_order_of_inputs() -> None:
    """The data set's input is the first of the feeds, not the model's first input: here the model lists the
    state h before the data x, and only h is state."""
    nodes = [helper.make_node("Add", ["x", "h"], ["h_out"]), helper.make_node("Relu", ["h_out"], ["y"])]
    model = _model(nodes, [_vi("h", [1, 3]), _vi("x", [1, 3])], [_vi("h_out", [1, 3]), _vi("y", [1, 3])])
    feeds = {"x": RNG.normal(size=(1, 3)).astype(np.float32), "h": np.zeros((1, 3), np.float32)}
    prepared = prepare(model, feeds=[feeds])
    assert prepared.state == {"h": "h_out"}
    assert "recurrent state" in prepared.unquantizable["h"] and "x" not in prepared.unquantizable
