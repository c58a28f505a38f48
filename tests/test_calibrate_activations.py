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


def _recycled(model: onnx.ModelProto, names: list[str]) -> tuple[activations.RecycledRun, onnx.ModelProto]:
    exposed = activations.with_outputs(model, names)
    return activations.RecycledRun(activations.session(exposed, portable=True), names), exposed


def test_recycled_runs_give_the_plain_runs_outputs_in_arrays_of_two_calls_before() -> None:
    """Batches of two sizes in turn; the model input 'x' is exposed too (ONNX Runtime hands an input back as
    it is and leaves a bound buffer alone, so it must come from the feed)."""
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Relu", ["sq"], ["r"]),
             helper.make_node("Neg", ["r"], ["y"])]
    model = _model([("x", ["N", 3, 4])], nodes, [("y", ["N", 3, 4])])
    names = ["x", "sq", "r", "y"]
    run, exposed = _recycled(model, names)
    plain = activations.session(exposed, portable=True)
    batches = [RNG.normal(size=(rows, 3, 4)).astype(np.float32) for rows in (4, 4, 4, 2, 4, 4, 4, 4)]
    seen: list[list[np.ndarray]] = []
    for x in batches:
        got = run(x)
        want = activations.run(plain, x, names)
        for name, a, b in zip(names, got, want, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
        if len(seen) >= 2 and len(seen[-2][1]) == len(x):
            assert got[1] is seen[-2][1]  # ONNX Runtime wrote into the arrays of two calls before
        seen.append(got)
    assert run.recycling


@pytest.mark.parametrize("declared", [[2, "K"], [2, 3]])
def test_outputs_whose_shape_follows_the_data_are_allocated_each_time(declared: list[int | str]) -> None:
    """NonZero's output has as many columns as x has non-zero values. Declared with a symbolic dim, it is never
    bound; declared [2, 3] (wrongly), the bound run of a batch with 2 non-zero values is refused by ONNX Runtime's
    shape check, that batch runs again the plain way, and so do the ones after it."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
                              [helper.make_tensor_value_info("nz", TensorProto.INT64, declared)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    run = activations.RecycledRun(activations.session(model), ["nz"])
    assert run.recycling == (declared == [2, 3])
    for count in (3, 3, 2, 4, 3, 3):
        x = np.zeros((2, 5), np.float32)
        x.flat[:count] = 1.0
        (nz,) = run(x)
        np.testing.assert_array_equal(nz, np.array(np.nonzero(x)))
    assert not run.recycling
