"""The data layouts the README documents: class folders, a flat folder for calibration (its labels are not used),
and `edgeq recipe validate` refusing folders that hold no images, naming the folder and what was expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from edgeq import recipe as recipe_module
from edgeq import targets
from edgeq.calibrate import calibrate
from edgeq.data import IMAGE_SUFFIXES
from tests.calibrate_nets import fire_net, write_recipe
from tests.cli import run_edgeq


def _png(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)


def _image_recipe(folder: Path, calibration: str) -> Path:
    """A recipe whose validation data are class folders ``val/a``, ``val/b`` and whose calibration path is ``calibration``."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for i in range(3):
            _png(folder / "val" / name / f"{i}.png", rng)
    path = write_recipe(folder, fire_net(classes=2), samples=6)
    recipe = yaml.safe_load(path.read_text())
    recipe["calibration"]["path"], recipe["validation"] = calibration, {"path": "val"}
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_flat_calibration_folder_validates_and_calibrates(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(6):
        _png(tmp_path / "flat" / f"img_{i}.png", rng)
    path = _image_recipe(tmp_path, "flat")
    result = run_edgeq("recipe", "validate", path)
    assert result.code == 0, result.stderr
    assert f"calibration: 6 of 6 samples from {tmp_path / 'flat'} (no class folders)" in result.stdout
    assert f"validation: 6 of 6 samples from {tmp_path / 'val'} (2 classes)" in result.stdout
    calibrated = calibrate(recipe_module.load(path), targets.resolve("local"), progress=False)
    assert calibrated.report.calibration_samples == 6 and calibrated.report.accuracy.fp32 >= 0


@pytest.mark.parametrize("content", ["nothing", "a text file", "empty class folders"])
def test_validate_refuses_a_folder_without_images(tmp_path: Path, content: str) -> None:
    folder = tmp_path / "cal"
    folder.mkdir()
    if content == "a text file":
        (folder / "notes.txt").write_text("images go here\n")
    elif content == "empty class folders":
        (folder / "a").mkdir()
        (folder / "b").mkdir()
    path = _image_recipe(tmp_path, "cal")
    result = run_edgeq("recipe", "validate", path)
    assert result.code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    expected = "holds no images" if content == "empty class folders" else "has neither class sub-folders nor images"
    assert line.startswith(f"error: {folder}: calibration folder {expected}")
    assert all(suffix in line for suffix in IMAGE_SUFFIXES)


def test_validate_refuses_calibration_and_validation_classes_that_differ(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for name in ("a", "c"):
        _png(tmp_path / "cal" / name / "0.png", rng)
    result = run_edgeq("recipe", "validate", _image_recipe(tmp_path, "cal"))
    assert result.code == 2 and "class folders differ" in result.stderr and "only in validation: ['b']" in result.stderr
