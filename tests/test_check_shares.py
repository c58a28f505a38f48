"""MAC shares that count nodes of unknown size, and `check` naming the INT8 path deploy takes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from edgeq import targets
from edgeq.check import check_model
from edgeq.report.check_view import summary_table
from tests.check_graphs import finish
from tests.cli import run_edgeq


def _conv_then_dynamic_matmul() -> onnx.ModelProto:
    """x [1, 8, 16, 16] -> Conv (known size) ; t [1, T, 64] (T unknown) -> MatMul with [64, 32] (unknown size)."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["t", "m"], ["z"], name="matmul"),
        helper.make_node("ReduceSum", ["z"], ["zs"], name="sum", keepdims=0),
    ]
    model = finish(nodes, {"x": [1, 8, 16, 16], "t": [1, "T", 64]}, "y", {"w": np.ones((8, 8, 3, 3)), "m": np.ones((64, 32))}, 17)
    model.graph.output.append(helper.make_tensor_value_info("zs", onnx.TensorProto.FLOAT, None))
    return onnx.shape_inference.infer_shapes(model)


def test_mac_nodes_of_unknown_size_are_counted_apart_and_the_share_says_it_is_lower() -> None:
    model = _conv_then_dynamic_matmul()
    report = check_model(model, targets.resolve("agx-orin-jp6.2"), int8=False)  # nothing INT8: every node misses it
    shares = report.shares
    assert shares.total_macs == 16 * 16 * 8 * 8 * 9 and shares.unknown_mac_nodes == 1 and shares.unknown_not_int8 == 1
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(summary_table(report))
    assert "1 MAC node(s) of unknown size miss INT8: the true share is lower" in console.export_text()


def test_check_names_the_int8_path_deploy_takes(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_conv_then_dynamic_matmul(), str(path))
    for target, expected in [("agx-orin-jp6.2", "explicit"), ("agx-xavier-jp5.1", "implicit")]:
        result = run_edgeq("check", path, "--target", target, "--json")
        assert json.loads(result.stdout)["quantization"] == expected, (target, result.stderr)
    # with a recipe, its build.quantization decides as it does for deploy
    (tmp_path / "recipe.yaml").write_text(
        "name: t\nmodel: model.onnx\ninputs:\n  - {name: x, shape: [1, 8, 16, 16]}\n  - {name: t, shape: [1, 5, 64]}\n"
        "calibration: {path: c.npz}\nvalidation: {path: v.npz}\nbuild: {quantization: implicit}\n"
    )
    result = run_edgeq("check", tmp_path / "recipe.yaml", "--target", "agx-orin-jp6.2", "--json")
    data = json.loads(result.stdout)
    assert data["quantization"] == "implicit", result.stderr
    assert data["shares"]["unknown_mac_nodes"] == 0  # the recipe's static shapes size the MatMul
    assert data["dynamic_inputs"] == {}
