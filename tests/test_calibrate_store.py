"""Where calibrations go: one folder per recipe and target, and a store of what every target shares."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import yaml

from edgeq import recipe as recipe_module
from edgeq import targets
from edgeq.calibrate import calibrate
from edgeq.device.hashing import sha256_file
from tests.calibrate_nets import fire_net, write_recipe

ORIN = "agx-orin-jp6.2"  # TensorRT 10.3.0


def _second_recipe(folder: Path, name: str, seed: int) -> Path:
    """Another recipe in ``folder`` (beside write_recipe's), with its own model and the same data."""
    onnx.save(fire_net(seed=seed), folder / f"{name}.onnx")
    data = yaml.safe_load((folder / "recipe.yaml").read_text())
    data.update(name=name, model=f"{name}.onnx")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_recipes_in_one_folder_keep_separate_outputs(tmp_path: Path) -> None:
    first_path = write_recipe(tmp_path, fire_net(seed=0))
    second_path = _second_recipe(tmp_path, "other", seed=7)
    target = targets.resolve(ORIN)
    first = calibrate(recipe_module.load(first_path), target, progress=False)
    before = {p.name: sha256_file(p) for p in first.folder.iterdir()}
    second = calibrate(recipe_module.load(second_path), target, progress=False)
    assert first.folder == tmp_path / "edgeq-out" / "tiny" / ORIN
    assert second.folder == tmp_path / "edgeq-out" / "other" / ORIN
    assert {p.name: sha256_file(p) for p in first.folder.iterdir()} == before  # the second left the first's alone
    assert json.loads(second.artifacts.report.read_text())["model"] == str(tmp_path / "other.onnx")
    assert sha256_file(second.artifacts.fp32_model) != sha256_file(first.artifacts.fp32_model)
    assert calibrate(recipe_module.load(first_path), target, progress=False).reused  # still current
