"""Built-in task metrics, the metric a recipe picks, custom metrics on every named output, and labels files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeq import labels as labels_module
from edgeq import metrics
from edgeq.data import Dataset
from edgeq.errors import InputError
from edgeq.metrics import classification, segmentation, text
from edgeq.recipe import SegmentationOptions, parse


def _recipe(folder: Path, **validation):
    data = {"name": "t", "model": "m.onnx", "inputs": [{"name": "x", "shape": ["N", 3, 8, 8]}],
            "preprocess": {"resize": [8, 8]}, "calibration": {"path": "cal"}, "validation": {"path": "val", **validation}}
    return parse(data, folder / "recipe.yaml")


def test_top1_and_top5() -> None:
    scores = np.eye(8)[[0, 1, 2, 3]] + np.linspace(0, 0.5, 8)  # row i: class i best, then 7, 6, 5, 4
    assert classification.top_k(scores, np.array([0, 1, 7, 4]), 1) == 50.0
    assert classification.top_k(scores, np.array([0, 1, 7, 4]), 5) == 100.0
    assert classification.top_k(scores, np.array([0, 1, 2, 0]), 5) == 75.0


def test_mean_iou_over_the_data_set_and_mask_forms() -> None:
    labels = np.array([[[0, 0], [1, 1]], [[0, 255], [2, 2]]])
    predicted = np.array([[[0, 1], [1, 1]], [[0, 0], [2, 0]]])
    # class 0: inter 2 (ignored pixel left out), union 4; class 1: 2 / 3; class 2: 1 / 2
    assert segmentation.mean_iou(predicted, labels, 255) == pytest.approx((2 / 4 + 2 / 3 + 1 / 2) / 3)
    scores = np.stack([predicted == c for c in range(3)], axis=1).astype(np.float32)
    np.testing.assert_array_equal(segmentation.class_map(scores, SegmentationOptions()), predicted)
    probability = np.array([[[[0.2, 0.7]]]], np.float32)
    assert segmentation.class_map(probability, SegmentationOptions(threshold=0.3)).tolist() == [[[0, 1]]]


def test_ctc_greedy_decoding_and_cer() -> None:
    steps = np.array([0, 3, 3, 0, 3, 1, 1, 0, 2])  # blank 0: "3 3 1 2" (a blank splits the repeated 3)
    output = np.eye(4)[steps][None].astype(np.float32)
    assert text.greedy_decode(output, blank=0) == [[3, 3, 1, 2]]
    assert text.edit_distance(list("kitten"), list("sitting")) == 3
    alphabet = ["a", "b", " "]
    references = text.reference_sequences(np.array(["b ab", "a"]), alphabet, blank=0)
    assert references == [[2, 3, 1, 2], [1]]
    assert text.cer([[2, 3, 1, 2], [2]], references) == pytest.approx(1 / 5)
    assert text.reference_sequences(np.array([[1, 2, -1], [3, -1, -1]]), None, 0) == [[1, 2], [3]]
    with pytest.raises(ValueError, match="not in the alphabet"):
        text.reference_sequences(np.array(["z"]), alphabet, 0)


def test_recipe_picks_the_metric_by_name_and_labels(tmp_path: Path) -> None:
    out = {"a": np.eye(3, dtype=np.float32), "b": np.ones((3, 2), np.float32)}
    noisy = {"a": out["a"] + 0.1, "b": out["b"] * np.array([1.0, -1.0], np.float32)}
    assert metrics.load(_recipe(tmp_path), np.array([0, 1, 2])).name == "top1"
    fidelity = metrics.load(_recipe(tmp_path), None)
    assert fidelity.name == "fidelity"
    scores = fidelity.compare(out, noisy, None)
    assert scores.fp32 == 100.0 and scores.int8 == pytest.approx(0.0) and scores.drop == pytest.approx(100.0)
    assert scores.details["int8"]["b cosine"] == pytest.approx(0.0) and "a snr_db" in scores.details["int8"]
    assert metrics.load(_recipe(tmp_path, metric="detection"), None).name == "box_f1"
    assert metrics.load(_recipe(tmp_path, metric="detection"), {"boxes": np.zeros((1, 0, 4))}).name == "map50_95"
    with pytest.raises(InputError, match=r"map50 needs labels.*box_f1"):
        metrics.load(_recipe(tmp_path, metric="map50"), None)
    with pytest.raises(InputError, match="no output named 'c'"):
        metrics.load(_recipe(tmp_path, metric="top1", output="c"), np.zeros(3, np.int64))(out, np.zeros(3, np.int64))
    assert metrics.load(_recipe(tmp_path, metric="top5", output="b"), np.zeros(3, np.int64))(out, np.zeros(3, np.int64)) == 100.0


def test_cer_is_lower_better_and_compares_with_fp32_without_labels(tmp_path: Path) -> None:
    fp32 = {"logits": np.eye(3, dtype=np.float32)[[[1, 0, 2], [2, 2, 0]]]}  # "1 2", "2"
    int8 = {"logits": np.eye(3, dtype=np.float32)[[[1, 0, 1], [2, 2, 0]]]}  # "1 1", "2"
    against_fp32 = metrics.load(_recipe(tmp_path, metric="cer"), None).compare(fp32, int8, None)
    assert (against_fp32.fp32, against_fp32.int8, against_fp32.drop) == (0.0, pytest.approx(100 / 3), pytest.approx(100 / 3))
    labelled = metrics.load(_recipe(tmp_path, metric="cer"), np.array([[1, 1], [2, -1]])).compare(fp32, int8, np.array([[1, 1], [2, -1]]))
    assert labelled.fp32 == pytest.approx(100 / 3) and labelled.int8 == 0.0 and labelled.drop == pytest.approx(-100 / 3)


def test_custom_metric_gets_every_named_output(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("def both(outputs, labels):\n    return float(outputs['a'].sum() + outputs['b'].sum() + labels.sum())\n")
    metric = metrics.load(_recipe(tmp_path, metric="m.py:both"), np.ones(2))
    assert metric({"a": np.ones(2), "b": np.full(3, 2.0)}, np.ones(2)) == 10.0
    with pytest.raises(InputError, match="needs labels"):
        metrics.load(_recipe(tmp_path, metric="m.py:both"), None)
    with pytest.raises(InputError, match=r"raised KeyError: 'b'"):
        metric({"a": np.ones(2)}, np.ones(2))


def _images(folder: Path, names: list[str], size: tuple[int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", size, (90, 30, 200)).save(folder / name)


def test_coco_labels_are_matched_by_file_name_and_scaled_to_the_input(tmp_path: Path) -> None:
    _images(tmp_path / "val", ["a.png", "b.png", "c.png"], (16, 32))  # width 16, height 32; the input is 8 x 8
    coco = {
        "images": [{"id": 7, "file_name": "c.png", "width": 16, "height": 32}, {"id": 3, "file_name": "a.png", "width": 16, "height": 32},
                   {"id": 5, "file_name": "sub/b.png", "width": 16, "height": 32}],
        "annotations": [{"id": 1, "image_id": 3, "category_id": 20, "bbox": [2, 4, 4, 8]},
                        {"id": 2, "image_id": 3, "category_id": 10, "bbox": [0, 0, 16, 32]},
                        {"id": 3, "image_id": 7, "category_id": 20, "bbox": [0, 0, 2, 2], "iscrowd": 1}],
        "categories": [{"id": 20, "name": "cat"}, {"id": 10, "name": "dog"}],
    }
    (tmp_path / "boxes.json").write_text(json.dumps(coco))
    recipe = _recipe(tmp_path, labels="boxes.json", metric="map50")
    dataset = Dataset.from_spec(recipe, recipe.validation, "validation")
    assert dataset.labels is None and len(dataset) == 3  # a flat folder of images
    loaded = labels_module.load(recipe, dataset)
    assert loaded.class_names == ["dog", "cat"]  # ordered by category id
    assert loaded.labels["labels"].tolist() == [[1, 0], [-1, -1], [-1, -1]]  # crowd boxes are left out
    np.testing.assert_allclose(loaded.labels["boxes"][0], [[1, 1, 3, 3], [0, 0, 8, 8]])
    columns = labels_module.columns(loaded.labels)
    assert set(columns) == {"labels.boxes", "labels.labels"}
    back = labels_module.from_arrays(columns)
    assert set(back) == {"boxes", "labels"}
    assert metrics.load(recipe, back)({"o": np.zeros((3, 6, 10), np.float32)}, back) == 0.0

    (tmp_path / "boxes.json").write_text(json.dumps({**coco, "images": coco["images"][:2]}))
    with pytest.raises(InputError, match="no entry in 'images' for 1 validation image"):
        labels_module.load(recipe, dataset)


def test_npz_labels_follow_the_sample_selection(tmp_path: Path) -> None:
    np.savez(tmp_path / "val.npz", x=np.zeros((6, 3, 8, 8), np.float32))
    masks = np.arange(6)[:, None, None] * np.ones((6, 4, 4), np.int64)
    np.savez(tmp_path / "masks.npz", labels=masks)
    recipe = _recipe(tmp_path, path="val.npz", samples=3, seed=1, labels="masks.npz", metric="miou")
    dataset = Dataset.from_spec(recipe, recipe.validation, "validation")
    loaded = labels_module.load(recipe, dataset).labels
    assert [int(m[0, 0]) for m in loaded] == list(dataset.order) and len(loaded) == 3
    np.savez(tmp_path / "masks.npz", labels=masks[:5])
    with pytest.raises(InputError, match="one entry per sample of the validation data \\(6\\)"):
        labels_module.load(recipe, dataset)
