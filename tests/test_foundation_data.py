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


def test_numeric_class_folders_sort_as_numbers_and_an_explicit_list_wins(tmp_path: Path) -> None:
    _images(tmp_path / "cal", {"0": 1, "90": 1, "180": 1, "270": 1, "img2": 1, "img10": 1})
    recipe = _recipe(tmp_path)
    data = Dataset.from_spec(recipe, recipe.calibration, "calibration")
    assert data.classes == ["0", "90", "180", "270", "img2", "img10"]  # plain sorting gave 0, 180, 270, 90
    assert data.labels.tolist() == [0, 1, 2, 3, 4, 5]
    order = ["270", "180", "90", "0", "img10", "img2"]
    explicit = recipes.parse({**recipe.model_dump(mode="json"), "classes": order}, tmp_path / "recipe.yaml")
    data = Dataset.from_spec(explicit, explicit.calibration, "calibration")
    assert data.classes == order
    assert [data._files[i].parent.name for i in range(len(data))] == order
    wrong = recipes.parse({**recipe.model_dump(mode="json"), "classes": ["0", "90", "180", "360"]}, tmp_path / "recipe.yaml")
    with pytest.raises(InputError, match=r"no folder for: \['360'\].*not in classes: \['270', 'img2', 'img10'\]"):
        Dataset.from_spec(wrong, wrong.calibration, "calibration")


def _one_image(root: Path, pixels: np.ndarray) -> None:
    (root / "a").mkdir(parents=True)
    Image.fromarray(pixels).save(root / "a" / "0.png")


@pytest.mark.parametrize("position", ["center", "top_left"])
def test_letterbox_keeps_the_aspect_ratio_and_pads(tmp_path: Path, position: str) -> None:
    wide = np.full((4, 8, 3), 200, np.uint8)  # 8 wide, 4 high -> 8x8 with 4 rows of padding
    _one_image(tmp_path / "cal", wide)
    base = _recipe(tmp_path).model_dump(mode="json")
    base["preprocess"] = {"resize": [8, 8], "fit": "letterbox", "pad_value": 114, "pad_position": position, "scale": 1.0,
                          "mean": [0, 0, 0], "std": [1, 1, 1]}
    recipe = recipes.parse(base, tmp_path / "recipe.yaml")
    x = Dataset.from_spec(recipe, recipe.calibration, "calibration").load().x[0, 0]
    image_rows = [2, 3, 4, 5] if position == "center" else [0, 1, 2, 3]
    assert np.all(x[image_rows] == 200)
    assert np.all(np.delete(x, image_rows, axis=0) == 114)


def test_center_crop_fills_and_keeps_the_middle(tmp_path: Path) -> None:
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, 4:12] = 255  # the middle 8 columns are white
    _one_image(tmp_path / "cal", pixels)
    base = _recipe(tmp_path).model_dump(mode="json")
    base["preprocess"] = {"resize": [8, 8], "fit": "center_crop", "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1]}
    recipe = recipes.parse(base, tmp_path / "recipe.yaml")
    x = Dataset.from_spec(recipe, recipe.calibration, "calibration").load().x[0]
    assert x.shape == (3, 8, 8) and np.all(x == 255)


def test_images_of_two_sizes_in_one_batch_are_one_clear_error(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _images(tmp_path / "cal", {"a": 1}, size=10)
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / "cal" / "a" / "1.png")
    data = {
        "name": "t",
        "model": "m.onnx",
        "inputs": [{"name": "data", "shape": ["N", 3, "H", "W"]}],  # any size, and no resize
        "calibration": {"path": "cal"},
        "validation": {"path": "cal"},
    }
    recipe = recipes.parse(data, tmp_path / "recipe.yaml")
    dataset = Dataset.from_spec(recipe, recipe.calibration, "calibration")
    assert [b.x.shape for b in dataset.batches(1)] == [(1, 3, 10, 10), (1, 3, 12, 12)]  # each alone: fine
    with ThreadPoolExecutor(2) as pool:
        assert [b.x.shape for b in dataset.batches(1, pool, ahead=2)] == [(1, 3, 10, 10), (1, 3, 12, 12)]
    with pytest.raises(InputError, match=r"1\.png: preprocessed to shape \[3, 12, 12\], but 0\.png in the same batch to"
                                         r" \[3, 10, 10\]: samples of one batch need one shape; set preprocess.resize"):
        dataset.load()


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


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(("order", "mean", "std"), [("RGB", [0.1, 0.2, 0.3], [0.5, 0.25, 0.3]), ("BGR", [0.4], [0.7]),
                                                    ("GRAY", [0.45], [0.225])])
def test_preprocessing_equals_the_plain_float32_formula_bit_for_bit(tmp_path: Path, layout: str, order: str, mean: list,
                                                                      std: list) -> None:
    from edgeq.data import preprocess_image
    from edgeq.recipe import Preprocess

    path = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (9, 7, 3), dtype=np.uint8)).save(path)
    spec = Preprocess(resize=(6, 5), channel_order=order, scale=1 / 255, mean=mean, std=std)
    image = Image.open(path).convert("L" if order == "GRAY" else "RGB").resize((5, 6), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, np.float32).reshape(6, 5, -1)[:, :, ::-1 if order == "BGR" else 1]
    channels = pixels.shape[2]
    want = (pixels * np.float32(1 / 255) - np.asarray((mean * 3)[:channels], np.float32)) / np.asarray((std * 3)[:channels], np.float32)
    got = preprocess_image(path, spec, layout)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got, want.transpose(2, 0, 1) if layout == "NCHW" else want)
