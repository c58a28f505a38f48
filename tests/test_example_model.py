"""The committed example (recipes/squeezenet-digits): the model's interface and its FP32 accuracy.

The accuracy is computed the way edgeq computes it (the recipe's data pipeline and metric, ONNX Runtime
on CPU) and must match the number the example's README states.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeq.data import Dataset
from edgeq.recipe import Recipe, load

EXAMPLE = Path(__file__).resolve().parents[1] / "recipes" / "squeezenet-digits"


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return load(EXAMPLE / "recipe.yaml")


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _readme_top1() -> float:
    text = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    found = re.search(r"FP32 validation top-1[^0-9]*([0-9]+(?:\.[0-9]+)?) ?%", text)
    assert found, "README.md states no 'FP32 validation top-1: NN.NN %'"
    return float(found.group(1))


def _metric() -> Callable[[dict[str, np.ndarray], np.ndarray], float]:
    spec = importlib.util.spec_from_file_location("squeezenet_digits_metric", EXAMPLE / "metric.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.model_accuracy


def test_model_interface(recipe: Recipe) -> None:
    model = onnx.load(recipe.model_path)
    onnx.checker.check_model(model)
    assert {o.domain: o.version for o in model.opset_import}.get("") == 13
    initializers = {i.name for i in model.graph.initializer}
    (data,) = [i for i in model.graph.input if i.name not in initializers]
    (prob,) = model.graph.output
    assert (data.name, prob.name) == ("data", "prob")
    assert data.type.tensor_type.elem_type == prob.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    batch, *rest = _dims(data)
    assert isinstance(batch, str) and rest == [3, 227, 227]
    assert _dims(prob) == [batch, 10]
    assert recipe.model_path.stat().st_size < 6 * 2**20


def test_metric_is_top1_in_percent() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert _metric()({"prob": scores}, np.array([0, 1, 1, 1])) == pytest.approx(75.0)


@pytest.mark.slow
def test_fp32_top1_matches_readme(recipe: Recipe) -> None:
    dataset = Dataset.from_spec(recipe, recipe.validation, "validation")
    assert dataset.classes == [str(d) for d in range(10)]
    session = ort.InferenceSession(str(recipe.model_path), providers=["CPUExecutionProvider"])
    scores = [session.run(["prob"], {"data": batch.x})[0] for batch in dataset.batches(64)]
    probabilities = np.concatenate(scores)
    assert probabilities.shape == (len(dataset), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    top1 = _metric()({"prob": probabilities}, dataset.labels)
    assert top1 >= 95.0
    assert top1 == pytest.approx(_readme_top1(), abs=0.1)
