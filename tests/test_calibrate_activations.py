"""activations.run with several inputs: the batch a model fixes is its data input's, every input is sliced on
its own sample axis, constants go whole, and what cannot be run in slices is refused by name."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeq.calibrate import activations
from edgeq.errors import InputError

RNG = np.random.default_rng(3)


def _model(inputs: list[tuple[str, list[int | str]]], nodes: list[onnx.NodeProto],
           outputs: list[tuple[str, list[int | str]]]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_a_fixed_batch_is_the_data_inputs_not_the_models_first_input() -> None:
    """The model lists the constant c [2] first; x [1, 2] fixes the batch at 1 (c's 2 was taken for it)."""
    model = _model([("c", [2]), ("x", [1, 2])], [helper.make_node("Add", ["x", "c"], ["y"])], [("y", [1, 2])])
    sess = activations.session(model)
    x, c = RNG.normal(size=(5, 2)).astype(np.float32), np.array([10.0, 20.0], np.float32)
    (y,) = activations.run(sess, {"x": x, "c": c})
    np.testing.assert_allclose(y, x + c)


def test_each_input_is_sliced_on_its_own_sample_axis() -> None:
    """h [2, 1, 3] holds its samples on axis 1 (a recurrent state), x [1, 3] on axis 0; both fixed at 1."""
    nodes = [helper.make_node("ReduceSum", ["h", "axis"], ["hs"], keepdims=0), helper.make_node("Add", ["x", "hs"], ["y"])]
    model = _model([("x", [1, 3]), ("h", [2, 1, 3])], nodes, [("y", [1, 3])])
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([0], np.int64), "axis"))
    sess = activations.session(model)
    x, h = RNG.normal(size=(3, 3)).astype(np.float32), RNG.normal(size=(2, 3, 3)).astype(np.float32)
    (y,) = activations.run(sess, {"x": x, "h": h})
    np.testing.assert_allclose(y, x + h.sum(axis=0), rtol=1e-6)


def test_an_output_without_samples_on_axis_0_is_refused_by_name() -> None:
    """state [2, 1, 3] holds its samples on axis 1: slices of a fixed batch cannot be joined back on axis 0."""
    nodes = [helper.make_node("Unsqueeze", ["x", "axis"], ["u"]), helper.make_node("Concat", ["u", "u"], ["state"], axis=0),
             helper.make_node("Identity", ["x"], ["y"])]
    model = _model([("x", [1, 3])], nodes, [("y", [1, 3]), ("state", [2, 1, 3])])
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([0], np.int64), "axis"))
    sess = activations.session(model)
    x = RNG.normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_allclose(activations.run(sess, {"x": x}, ["y"])[0], x)  # only y asked: fine in slices
    assert activations.run(sess, {"x": x[:1]})[1].shape == (2, 1, 3)  # one sample: no slicing
    with pytest.raises(InputError, match=r"output 'state' \[2, 1, 3\] has no samples on axis 0, and the model's batch is fixed at 1"):
        activations.run(sess, {"x": x})


def test_one_array_for_a_model_of_several_inputs_is_refused() -> None:
    model = _model([("a", ["N", 2]), ("b", ["N", 2])], [helper.make_node("Add", ["a", "b"], ["y"])], [("y", ["N", 2])])
    with pytest.raises(InputError, match=r"the model has 2 inputs \(a, b\): feed every input by name"):
        activations.run(activations.session(model), np.zeros((1, 2), np.float32))
