"""Recipes resolve paths against their folder; data sets load lazily and refuse bad input clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeq import recipe as recipes
from edgeq.data import Dataset, check_same_classes
from edgeq.errors import InputError


def _images(root: Path, classes: dict[str, int], size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def _recipe(folder: Path, cal: str = "cal", val: str = "val", **extra: object) -> recipes.Recipe:
    data = {
        "name": "t",
        "model": "m.onnx",
        "inputs": [{"name": "data", "shape": ["N", 3, 8, 8]}],
        "preprocess": {"resize": [8, 8], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "calibration": {"path": cal, "batch_size": 2, **extra},
        "validation": {"path": val},
    }
    return recipes.parse(data, folder / "recipe.yaml")


def test_paths_resolve_against_recipe_folder(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path / "sub dir")
    assert recipe.model_path == (tmp_path / "sub dir" / "m.onnx").resolve()


def test_folder_dataset_labels_from_folder_names_and_preprocessing(tmp_path: Path) -> None:
    _images(tmp_path / "cal", {"cat": 3, "dog": 2}, size=8)
    recipe = _recipe(tmp_path)
    data = Dataset.from_spec(recipe, recipe.calibration, "calibration")
    assert data.classes == ["cat", "dog"]
    assert len(data) == 5
    batches = list(data.batches(2))
    assert [len(b.x) for b in batches] == [2, 2, 1]
    assert batches[0].x.shape == (2, 3, 8, 8) and batches[0].x.dtype == np.float32
    assert np.concatenate([b.labels for b in batches]).tolist() == [0, 0, 0, 1, 1]
    # (pixel/255 - 0.5) / 0.25 for the first pixel of the first cat image
    first = np.asarray(Image.open(tmp_path / "cal" / "cat" / "0.png").convert("RGB"), np.float32)
    expected = (first[0, 0, 0] / 255 - 0.5) / 0.25
    assert batches[0].x[0, 0, 0, 0] == pytest.approx(expected, rel=1e-5)


def test_sample_count_selects_a_subset(tmp_path: Path) -> None:
    _images(tmp_path / "cal", {"a": 4, "b": 4})
    recipe = _recipe(tmp_path, samples=3)
    assert len(Dataset.from_spec(recipe, recipe.calibration, "calibration")) == 3


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cal").mkdir()
    recipe = _recipe(tmp_path)
    with pytest.raises(InputError, match="neither class sub-folders nor images"):
        Dataset.from_spec(recipe, recipe.calibration, "calibration")


def test_missing_path_names_the_field(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    with pytest.raises(InputError, match=r"calibration\.path"):
        Dataset.from_spec(recipe, recipe.calibration, "calibration")


def test_npz_wrong_shape_and_dtype(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad_shape.npz", x=np.zeros((4, 3, 9, 8), np.float32))
    np.savez(tmp_path / "bad_dtype.npz", x=np.zeros((4, 3, 8, 8), np.float64))
    np.savez(tmp_path / "good.npz", x=np.ones((4, 3, 8, 8), np.float32), labels=np.arange(4))
    with pytest.raises(InputError, match=r"shape \[4, 3, 9, 8\], expected \[N, 3, 8, 8\]"):
        recipe = _recipe(tmp_path, cal="bad_shape.npz")
        Dataset.from_spec(recipe, recipe.calibration, "calibration")
    with pytest.raises(InputError, match="dtype float64, expected float32"):
        recipe = _recipe(tmp_path, cal="bad_dtype.npz")
        Dataset.from_spec(recipe, recipe.calibration, "calibration")
    recipe = _recipe(tmp_path, cal="good.npz")
    batch = Dataset.from_spec(recipe, recipe.calibration, "calibration").load()
    assert batch.x.shape == (4, 3, 8, 8) and batch.labels.tolist() == [0, 1, 2, 3]


def test_wrong_image_size_without_resize(tmp_path: Path) -> None:
    _images(tmp_path / "cal", {"a": 1}, size=10)
    data = {
        "name": "t",
        "model": "m.onnx",
        "inputs": [{"name": "data", "shape": [1, 3, 8, 8]}],
        "calibration": {"path": "cal"},
        "validation": {"path": "cal"},
    }
    recipe = recipes.parse(data, tmp_path / "recipe.yaml")
    with pytest.raises(InputError, match=r"preprocessed to shape \[3, 10, 10\]"):
        Dataset.from_spec(recipe, recipe.calibration, "calibration").load()


def test_class_folders_must_match(tmp_path: Path) -> None:
    _images(tmp_path / "cal", {"a": 1, "b": 1})
    _images(tmp_path / "val", {"a": 1, "c": 1})
    recipe = _recipe(tmp_path)
    cal = Dataset.from_spec(recipe, recipe.calibration, "calibration")
    val = Dataset.from_spec(recipe, recipe.validation, "validation")
    with pytest.raises(InputError, match=r"only in calibration: \['b'\]; only in validation: \['c'\]"):
        check_same_classes(cal, val)


def test_images_decoded_ahead_on_a_pool_give_the_same_batches(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _images(tmp_path / "cal", {"a": 5, "b": 4}, size=8)
    recipe = _recipe(tmp_path)
    data = Dataset.from_spec(recipe, recipe.calibration, "calibration")
    serial = list(data.batches(4))
    with ThreadPoolExecutor(3) as pool:
        ahead = list(data.batches(4, pool, ahead=1))
        assert next(data.batches(2, pool)).x.shape == (2, 3, 8, 8)  # a consumer may stop early
    assert [len(b.x) for b in ahead] == [4, 4, 1]
    for one, other in zip(serial, ahead, strict=True):
        assert np.array_equal(one.x, other.x) and np.array_equal(one.labels, other.labels)


def test_a_bad_image_decoded_ahead_fails_where_it_is_read(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _images(tmp_path / "cal", {"a": 6}, size=8)
    (tmp_path / "cal" / "a" / "4.png").write_bytes(b"not a png")
    recipe = _recipe(tmp_path)
    data = Dataset.from_spec(recipe, recipe.calibration, "calibration")
    with ThreadPoolExecutor(2) as pool:
        batches = data.batches(2, pool, ahead=2)
        assert len(next(batches).x) == 2 and len(next(batches).x) == 2  # images 0-3 are fine
        with pytest.raises(InputError, match=r"4\.png"):
            next(batches)
