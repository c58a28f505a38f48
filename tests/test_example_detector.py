"""The detector example (recipes/nudenet-faces): labels that match the images, and `deploy --target local` ending
with a report and the box overlay, exit 0 or 1 by its gate, never a traceback."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.cli import run_edgeq

EXAMPLE = Path(__file__).resolve().parents[1] / "recipes" / "nudenet-faces"


def _nudenet_model() -> Path:
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nudenet is not installed (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / "320n.onnx"


def test_labels_name_every_validation_image_and_the_models_classes() -> None:
    labels = json.loads((EXAMPLE / "labels.json").read_text())
    files = sorted(p.name for p in (EXAMPLE / "images" / "val").iterdir())
    assert sorted(image["file_name"] for image in labels["images"]) == files
    names = {c["id"]: c["name"] for c in labels["categories"]}
    assert len(names) == 18 and {names[a["category_id"]] for a in labels["annotations"]} == {"FACE_FEMALE", "FACE_MALE"}
    for annotation in labels["annotations"]:
        x, y, w, h = annotation["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 320 and y + h <= 320 and w > 10 and h > 10


@pytest.mark.slow
def test_detector_deploys_locally_with_a_box_overlay(tmp_path: Path) -> None:
    recipe = tmp_path / "nudenet-faces"
    shutil.copytree(EXAMPLE, recipe, ignore=shutil.ignore_patterns("edgeq-out", "model.onnx"))
    shutil.copyfile(_nudenet_model(), recipe / "model.onnx")
    data = yaml.safe_load((recipe / "recipe.yaml").read_text())
    data["calibration"]["samples"] = 16  # few samples: the deploy path is what is tested here
    data["budget"]["accuracy_drop"] = 100.0  # a predicted drop within budget: no sensitivity ranking (minutes)
    (recipe / "recipe.yaml").write_text(yaml.safe_dump(data))
    result = run_edgeq("deploy", recipe / "recipe.yaml", "--target", "local", "--workdir", tmp_path / "device", "--json")
    assert result.code in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    (report,) = json.loads(result.stdout)
    evaluation = report["evaluation"]
    assert evaluation["metric"] == "map50_95" and evaluation["samples"] == 40
    assert set(evaluation["details"]["int8"]) == {"map50", "map50_95"}
    assert evaluation["fp32"] > 30.0  # FP32 finds the faces the labels mark
    assert result.code == (0 if evaluation["drop"] <= data["budget"]["accuracy_drop"] else 1)
    smoke = next(gate for gate in report["gates"] if gate["name"] == "smoke")  # boxes, not class scores: cosine decides
    assert smoke["unit"] == "cosine" and smoke["value"] == report["smoke"]["comparison"]["cosine"] and smoke["limit"] == 0.99
    page = (recipe / "edgeq-out" / "nudenet-faces" / "local" / "deploy" / "local" / "report.html").read_text()
    assert "FP32 vs INT8 detections" in page and "no chart could be drawn" not in page
    counts = re.search(r"(\d+) FP32 and (\d+) INT8 boxes", page)
    assert counts and int(counts.group(1)) > 0
    with np.load(recipe / "edgeq-out" / "nudenet-faces" / "local" / "deploy" / "local" / "outputs.int8.npz") as outputs:
        assert outputs["output0"].shape == (40, 22, 2100)
