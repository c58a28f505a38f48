"""The deploy page draws FP32 vs INT8 for any output: class-score bars, detector boxes, or error distributions,
and says why when it cannot (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.recipe import parse
from edgeq.report.deploy_html import prediction_section

PNG = b"\x89PNG"


def _recipe(folder: Path, shape: list, **validation):
    data = {"name": "t", "model": "m.onnx", "inputs": [{"name": "images", "shape": shape}],
            "calibration": {"path": "cal"}, "validation": {"path": "val", **validation}}
    return parse(data, folder / "recipe.yaml")


def _write(folder: Path, x: np.ndarray, fp32: dict, int8: dict, **labels: np.ndarray) -> tuple[Path, Path]:
    np.savez(folder / "validation.npz", images=x, **labels)
    np.savez(folder / "outputs.fp32.npz", **fp32)
    np.savez(folder / "outputs.int8.npz", **int8)
    return folder / "validation.npz", folder


def _yolov8_like(count: int, anchors: int = 2100, classes: int = 18) -> np.ndarray:
    """[N, 4 + C, A] with one confident box per image at a known place, the rest noise."""
    rng = np.random.default_rng(0)
    out = np.zeros((count, 4 + classes, anchors), np.float32)
    out[:, :4] = rng.uniform(5, 30, (count, 4, anchors))
    out[:, 4:] = rng.uniform(0, 0.01, (count, classes, anchors))
    out[:, :4, 7] = [[60, 80, 40, 50]] * count
    out[:, 4 + 3, 7] = 0.9
    return out


def test_yolov8_output_gets_the_box_overlay_not_the_bar_chart(tmp_path: Path) -> None:
    x = np.random.default_rng(1).uniform(0, 1, (5, 3, 160, 160)).astype(np.float32)
    fp32 = {"output0": _yolov8_like(5)}
    int8 = {"output0": fp32["output0"] * np.float32(1.01)}
    validation, pulled = _write(tmp_path, x, fp32, int8)
    section = prediction_section(_recipe(tmp_path, ["N", 3, 160, 160], metric="box_f1"), "box_f1", validation, pulled)
    assert section.title == "FP32 vs INT8 detections" and section.png.startswith(PNG)
    assert section.note.startswith("4 FP32 and 4 INT8 boxes")  # one per pictured sample, as planted


def test_class_scores_get_bars_even_with_many_classes_and_no_image_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    fp32 = {"logits": rng.normal(size=(6, 1000)).astype(np.float32)}
    int8 = {"logits": fp32["logits"] + np.float32(0.05)}
    validation, pulled = _write(tmp_path, rng.normal(size=(6, 40)).astype(np.float32), fp32, int8, labels=np.arange(6))
    section = prediction_section(_recipe(tmp_path, ["N", 40], metric="top1"), "top1", validation, pulled)
    assert section.title == "FP32 vs INT8 predictions" and section.png.startswith(PNG)


def test_other_outputs_get_per_output_error_distributions(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    fp32 = {"prob_map": rng.uniform(size=(3, 1, 64, 64)).astype(np.float32), "state": rng.normal(size=(3, 2, 128)).astype(np.float32)}
    int8 = {k: v + rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in fp32.items()}
    validation, pulled = _write(tmp_path, rng.uniform(size=(3, 3, 64, 64)).astype(np.float32), fp32, int8)
    section = prediction_section(_recipe(tmp_path, ["N", 3, 64, 64]), "fidelity", validation, pulled)
    assert section.title == "INT8 - FP32, output by output" and section.png.startswith(PNG)


@pytest.mark.parametrize("broken", ["missing outputs", "bad detector output"])
def test_a_chart_that_cannot_be_drawn_is_a_note(tmp_path: Path, broken: str) -> None:
    x = np.zeros((2, 3, 32, 32), np.float32)
    fp32 = {"o": np.zeros((2, 3, 4), np.float32)}
    validation, pulled = _write(tmp_path, x, fp32, fp32)
    if broken == "missing outputs":
        (pulled / "outputs.int8.npz").unlink()
    section = prediction_section(_recipe(tmp_path, ["N", 3, 32, 32], metric="map50"), "map50", validation, pulled)
    assert section.png is None and section.note.startswith("no chart could be drawn:")
