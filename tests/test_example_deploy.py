"""The README's main job: `edgeq deploy --target local` on the example recipe, end to end (real agent, real ONNX Runtime)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli import run_edgeq

EXAMPLE = Path(__file__).resolve().parents[1] / "recipes" / "squeezenet-digits"


@pytest.mark.slow
def test_example_deploys_locally_within_its_budget(tmp_path: Path, int8_path: str) -> None:
    """On either INT8 arithmetic (forced with EDGEQ_INT8_ARITH: the agent inherits it), within the 1-point budget."""
    recipe = tmp_path / "squeezenet-digits"
    shutil.copytree(EXAMPLE, recipe, ignore=shutil.ignore_patterns("edgeq-out"))  # artifacts go to tmp, not the repo
    result = run_edgeq("deploy", recipe / "recipe.yaml", "--target", "local", "--workdir", tmp_path / "device", "--json")
    assert result.code == 0, result.stderr
    (report,) = json.loads(result.stdout)
    evaluation = report["evaluation"]
    assert evaluation["samples"] == 539 and evaluation["metric"] == "metric.py:model_accuracy"
    assert evaluation["fp32"] >= 95.0
    assert evaluation["drop"] <= 1.0  # the recipe's budget
    assert report["activated"] and report["build"]["backend"] == "onnxruntime"
    engine = report["build"]["engine"]
    assert engine["int8_arithmetic"]["verdict"] == int8_path
    assert ("26 weight tensors requantized to 7 bits" in engine["int8_kernels"]) == (int8_path == "saturating")
    for precision in ("fp32", "int8"):
        assert report["bench"][precision]["iterations"] == 200
    assert (recipe / "edgeq-out" / "squeezenet-digits" / "local" / "deploy" / "local" / "report.html").is_file()
