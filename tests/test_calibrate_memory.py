"""Bounded memory: statistics expose activations within a byte budget, in several passes when one sample's
activations exceed it, so a 736 x 736 detector calibrates on 32 samples under 2 GB (it was killed at 8.2 GB)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgeq.calibrate import exposure

REPO = Path(__file__).resolve().parents[1]


def _conv_net() -> onnx.ModelProto:
    """x [N, 3, H, W] (H, W dynamic) -> Conv 8 -> Relu -> Conv 16 (stride 2)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(16, 8, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, "h", "w"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_tensor_sizes_come_from_the_datas_input_shape() -> None:
    sizes = exposure.tensor_bytes(_conv_net(), ["x", "a", "r", "y"], {"x": (5, 3, 64, 32)})
    assert sizes == {"x": 3 * 64 * 32 * 4, "a": 8 * 64 * 32 * 4, "r": 8 * 64 * 32 * 4, "y": 16 * 32 * 16 * 4}


def test_plan_cuts_groups_to_the_budget_and_rows_follow() -> None:
    plan = exposure.plan({"a": 40, "b": 50, "c": 30, "d": 200, "e": 10}, budget=100, run_bytes=100)
    assert plan.groups == [["a", "b"], ["c"], ["d"], ["e"]] and plan.passes == 4
    assert plan.rows == [1, 3, 1, 10] and plan.sample_bytes == [90, 30, 200, 10]
    assert exposure.plan({"a": 40, "b": 50}, budget=100, run_bytes=400).rows == [4]  # runs sized apart from passes
    assert exposure.plan({"a": 10, "b": 20}, budget=100).groups == [["a", "b"]]  # a small model: one pass


def test_a_tensor_derived_from_its_group_costs_nothing() -> None:
    """r = Relu(a) and c = Concat(a, r) follow from a (collect derives them), so they fit beside a, as y = Relu(b)
    beside b; counted at their sizes, every one but b and y would need a pass of its own."""
    sizes = {"a": 60, "r": 60, "c": 120, "b": 50, "y": 50}
    sources = {"r": ["a"], "c": ["a", "r"], "y": ["b"]}
    plan = exposure.plan(sizes, budget=100, run_bytes=100, sources=sources)
    assert plan.groups == [["a", "r", "c"], ["b", "y"]] and plan.sample_bytes == [60, 50] and plan.rows == [1, 2]
    assert exposure.plan(sizes, budget=100).groups == [["a"], ["r"], ["c"], ["b", "y"]]


def test_calibrate_says_how_its_statistics_were_exposed(tmp_path: Path) -> None:
    from tests.calibrate_nets import fire_net, write_recipe
    from tests.cli import run_edgeq

    result = run_edgeq("calibrate", write_recipe(tmp_path, fire_net()), "--target", "local")
    assert result.code == 0, result.stderr
    said = " ".join(result.stdout.split())
    # a small model: one pass, and all 64 calibration samples fit in one run
    assert re.search(r"statistics in 1 pass\(es\) exposing \d+\.\d MB of activations a sample \(at most 256 MB a pass\), 64"
                     r" sample\(s\) a run", said), said


def test_passes_give_the_statistics_of_one_pass() -> None:
    from edgeq.calibrate.collect import collect

    model = _conv_net()
    batches = [np.random.default_rng(i).normal(size=(3, 3, 16, 16)).astype(np.float32) for i in range(3)]
    whole = collect(model, ["x", "a", "r", "y"], batches)
    plan = exposure.plan({"x": 1, "a": 1, "r": 1, "y": 1}, budget=2)
    assert plan.passes == 2
    split = exposure.collect_in_passes(model, plan, lambda rows: batches)
    for name, stats in whole.items():
        assert (split[name].min, split[name].max, split[name].count) == (stats.min, stats.max, stats.count)
        np.testing.assert_array_equal(split[name].hist, stats.hist)


@pytest.mark.slow
def test_a_736_detector_calibrates_on_32_samples_under_2_gb(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("rapidocr-onnxruntime is not installed (pip install -e '.[test]')")
    shutil.copyfile(Path(spec.submodule_search_locations[0]) / "models" / "ch_PP-OCRv4_det_infer.onnx", tmp_path / "det.onnx")
    rng = np.random.default_rng(0)
    for folder, count in (("cal", 32), ("val", 4)):
        (tmp_path / folder).mkdir()
        for index in range(count):
            pixels = np.full((736, 736, 3), 230, np.uint8)
            for _ in range(10):  # dark strokes, a little like lines of text
                y, x = rng.integers(0, 700), rng.integers(0, 500)
                pixels[y : y + 12, x : x + int(rng.integers(60, 230))] = rng.integers(0, 60)
            Image.fromarray(pixels).save(tmp_path / folder / f"{index:03d}.png")
    recipe = {"name": "ppocr-det", "model": "det.onnx", "inputs": [{"name": "x", "shape": ["N", 3, 736, 736]}],
              "preprocess": {"resize": [736, 736], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
              "calibration": {"path": "cal", "samples": 32}, "validation": {"path": "val", "metric": "fidelity"},
              "budget": {"accuracy_drop": 100}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    done = subprocess.run([sys.executable, "-m", "edgeq", "calibrate", str(tmp_path / "recipe.yaml"), "-t", "local", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)["report"]
    memory = report["memory"]
    assert report["calibration_samples"] == 32 and memory["statistics_passes"] > 1
    assert memory["exposed_mb_per_sample"] > memory["budget_mb"]  # one sample's activations exceed one run's budget
    assert memory["peak_rss_mb"] <= 2048
