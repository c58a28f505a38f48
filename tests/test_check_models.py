"""`edgeq check` on real models: the example SqueezeNet (when trained) and PP-OCR models shipped in a PyPI wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgeq import model as model_io
from edgeq import recipe as recipes
from edgeq.check import check_model
from edgeq.check.report import VERDICTS
from tests.check_graphs import target

ROOT = Path(__file__).resolve().parent.parent
SQUEEZENET = ROOT / "recipes" / "squeezenet-digits" / "model.onnx"
RECIPE = ROOT / "recipes" / "squeezenet-digits" / "recipe.yaml"
OCR_MODELS = ["ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"]


def ocr_model(name: str) -> Path:
    """A model file inside the installed rapidocr-onnxruntime wheel (the package is never imported)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("rapidocr-onnxruntime is not installed (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / "models" / name


@pytest.mark.skipif(not SQUEEZENET.is_file(), reason="recipes/squeezenet-digits/model.onnx not trained yet (train.py makes it)")
def test_squeezenet_convolutions_all_int8_on_orin():
    recipe = recipes.load(RECIPE)
    model = model_io.with_input_shapes(model_io.load(recipe.model_path), {i.name: list(i.shape) for i in recipe.inputs})
    report = check_model(model, target("jetson-orin"), dla_core=None)
    convs = [n for n in report.nodes if n.op == "Conv"]
    assert convs and all(n.verdict == "int8" for n in convs)
    assert report.ok and report.shares.unknown_mac_nodes == 0
    print(f"\nSqueezeNet on jetson-orin: {report.shares.total_macs} MACs, INT8 share {report.shares.int8:.1%}")
    assert report.shares.int8 == 1.0


@pytest.mark.parametrize("name", OCR_MODELS)
@pytest.mark.parametrize(("target_name", "dla"), [("jetson-orin", True), ("jetson-xavier", True), ("jetson-orin-trt11", False),
                                                  ("local", False)])
def test_every_node_of_a_real_model_gets_a_verdict(name, target_name, dla):
    model = model_io.load(ocr_model(name))
    report = check_model(model, target(target_name), dla_core=0 if dla else None)
    assert len(report.nodes) == len(model.graph.node)
    assert all(n.verdict in VERDICTS for n in report.nodes)
    assert all(n.reasons for n in report.nodes if n.verdict in ("fallback", "unsupported"))
    assert report.counts["unsupported"] == 0  # PP-OCR uses standard ops every parser here takes
    assert all(n.verdict == "int8" for n in report.nodes if n.op == "Conv")
    if dla:
        placed = [n for n in report.nodes if n.dla is not None]
        assert placed and all(n.dla_reasons for n in placed if n.dla == "gpu-fallback")
        assert not report.ok  # the wheel's models have dynamic input shapes: no DLA without fixed shapes


def test_real_model_with_fixed_shapes_runs_its_convolutions_on_orin_dla():
    model = model_io.with_input_shapes(model_io.load(ocr_model(OCR_MODELS[0])), {"x": [1, 3, 48, 192]})
    report = check_model(model, target("jetson-orin"), dla_core=0)
    assert report.ok
    assert all(n.dla == "dla" for n in report.nodes if n.op == "Conv")
    assert report.shares.dla and report.shares.dla > 0.99
    xavier = check_model(model, target("jetson-xavier"), dla_core=0)
    assert next(n for n in xavier.nodes if n.op == "Softmax").dla == "gpu-fallback"
