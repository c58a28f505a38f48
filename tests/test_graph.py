"""edgeq.graph: the one place check and calibrate ask an ONNX graph who writes, who reads, what is constant and
what shape and type each tensor has."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeq.graph import GraphIndex, describe_dims, subgraphs


def _model() -> onnx.ModelProto:
    """x [N, 3] and w (an initializer, also listed as an input, as IR 3 does); k a Constant; a Loop reads x from
    its body (an implicit input).

    a = x * k; b = a + a; s = Shape(b); t = Cast(s); c = w * k (constants only); y = b + c; z = Loop(body reads x)
    """
    k = helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([2.0], np.float32), "kv"))
    body = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["x_copy"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_copy", TensorProto.FLOAT, ["N", 3])],
    )
    nodes = [
        k,
        helper.make_node("Mul", ["x", "k"], ["a"]),
        helper.make_node("Add", ["a", "a"], ["b"]),
        helper.make_node("Shape", ["b"], ["s"]),
        helper.make_node("Cast", ["s"], ["t"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["w", "k"], ["c"]),
        helper.make_node("Add", ["b", "c"], ["y"]),
        helper.make_node("Loop", ["trip", ""], ["z"], body=body),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]), helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]), helper.make_tensor_value_info("t", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1.0, 2.0, 3.0], np.float32), "w"),
         numpy_helper.from_array(np.array(2, np.int64), "trip")],
    )
    graph.value_info.extend([helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
                             helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
                             helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_producers_and_consumers() -> None:
    index = GraphIndex(_model())
    assert index.producer("a") is not None and index.producer("a").op_type == "Mul"
    assert index.producer("x") is None and index.producer("w") is None  # inputs and initializers have no producer
    assert [(node.op_type, position) for node, position in index.consumers("a")] == [("Add", 0), ("Add", 1)]
    assert [(node.output[0], position) for node, position in index.consumers("k")] == [("a", 1), ("c", 1)]
    assert index.consumers("y") == [] and index.consumers("") == []
    assert [node.op_type for node, _ in index.consumers("x")] == ["Mul"]
    with_bodies = index.consumers("x", subgraph_reads=True)
    assert [(node.op_type, position) for node, position in with_bodies] == [("Mul", 0), ("Loop", -1)]


def test_constants_and_what_depends_only_on_them() -> None:
    index = GraphIndex(_model())
    np.testing.assert_array_equal(index.constant("w"), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(index.constant("k"), [2.0])  # a Constant node's value
    assert index.constant("c") is None and index.constant("x") is None and index.constant("") is None
    assert index.constant("w") is index.constant("w")  # converted once
    assert set(index.initializers) == {"w", "trip"} and set(index.constant_nodes) == {"k"}
    assert index.data_independent == {"w", "trip", "k", "c"}  # not z: the Loop's body reads x


def test_inputs_leave_out_initializers_and_outputs_keep_their_order() -> None:
    index = GraphIndex(_model())
    assert index.inputs == ("x",)
    assert index.outputs == ("y", "t", "z")
    assert GraphIndex(_model().graph).inputs == ("x",)  # a GraphProto works as well


def test_shapes_and_element_types() -> None:
    index = GraphIndex(_model())
    assert index.shape("x") == ["N", 3] and index.shape("b") == [None, 3] and index.shape("w") == [3]
    assert index.shape("k") is None and index.shape("z") is None  # no value_info; an output without a shape
    assert index.static_shape("w") == (3,) and index.static_shape("s") == (2,)
    assert index.static_shape("x") is None and index.static_shape("b") is None
    assert index.elem_type("x") == TensorProto.FLOAT and index.elem_type("k") == TensorProto.FLOAT
    assert index.elem_type("trip") == TensorProto.INT64 and index.elem_type("c") is None
    assert index.is_integer("s") and index.is_integer("trip") and not index.is_integer("t") and not index.is_integer("c")
    assert set(index.value_infos) == {"x", "w", "a", "s", "b", "y", "t", "z"}


def test_subgraphs_are_named_by_their_attribute() -> None:
    then_branch = helper.make_graph([], "then", [], [])
    node = helper.make_node("If", ["cond"], ["out"], then_branch=then_branch, else_branch=helper.make_graph([], "else", [], []))
    assert [(label, sub.name) for label, sub in subgraphs(node)] == [("else_branch", "else"), ("then_branch", "then")]
    scan = helper.make_node("Mul", ["a", "b"], ["c"])
    assert subgraphs(scan) == []
    listed = onnx.AttributeProto(name="branches", type=onnx.AttributeProto.GRAPHS)
    listed.graphs.extend([then_branch, then_branch])
    scan.attribute.append(listed)
    assert [label for label, _ in subgraphs(scan)] == ["branches[0]", "branches[1]"]


def test_describe_dims() -> None:
    assert describe_dims([1, 3, None, "W"]) == "1x3x?xW"
    assert describe_dims(None) == "unknown"


def test_activations_are_the_float_tensors_that_depend_on_data() -> None:
    from edgeq.calibrate.activations import activation_tensors

    assert activation_tensors(_model()) == ["x", "a", "b", "t", "y", "z"]  # z: the Loop's body reads x
