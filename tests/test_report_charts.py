"""The deploy page draws FP32 vs INT8 for any output: class-score bars, detector boxes, or error distributions,
and says why when it cannot (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.recipe import parse
from edgeq.report import charts
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


def _logits(count: int, classes: int, seed: int = 4) -> np.ndarray:
    """Logits centred on 0 (most of them negative), each sample's top-1 clearly ahead of the rest."""
    rng = np.random.default_rng(seed)
    out = rng.normal(-2.0, 1.5, (count, classes)).astype(np.float32)
    out[np.arange(count), np.arange(count) % classes] = 6.0
    return out


def _flip(scores: np.ndarray, samples: list[int]) -> np.ndarray:
    """``scores`` with the top-1 class of ``samples`` moved to the next class."""
    out = scores.copy()
    for i in samples:
        top = int(out[i].argmax())
        out[i, (top + 1) % out.shape[1]] = out[i, top] + 1
    return out


def test_disagreements_are_picked_first_then_agreements_spread() -> None:
    fp32 = _logits(40, 10)
    int8 = _flip(fp32, [7, 23, 31])
    picked, differ = charts.disagreements_first(fp32, int8, 4)
    assert differ == 3 and list(picked[:3]) == [7, 23, 31] and len(picked) == 4
    assert picked[3] not in (7, 23, 31)
    many = _flip(fp32, list(range(0, 40, 2)))  # 20 disagree: 4 of them, spread over them
    picked, differ = charts.disagreements_first(fp32, many, 4)
    assert differ == 20 and list(picked) == [0, 12, 26, 38]
    picked, differ = charts.disagreements_first(fp32, fp32.copy(), 4)  # none: spread over all samples
    assert differ == 0 and list(picked) == [0, 13, 26, 39]


def test_logits_are_drawn_signed_around_zero_with_a_labelled_axis() -> None:
    fp32 = _logits(8, 10)
    chart = charts.score_chart(fp32, fp32 + np.float32(0.1), [0, 5], [f"c{i}" for i in range(10)], np.arange(8) % 10)
    assert not chart.probabilities and chart.y_label == charts.SCORE_AXIS
    for panel, (low, high) in zip(chart.panels, chart.y_limits, strict=True):
        assert panel.classes == list(range(10))  # ten classes: all drawn
        assert min(panel.fp32) < 0 and low < min(panel.fp32 + panel.int8) and high > max(panel.fp32 + panel.int8)
        assert panel.fp32 == [float(v) for v in fp32[panel.sample]]  # the values themselves, not clipped at 0
    assert chart.panels[1].title == "sample 5: label c5, FP32 c5, INT8 c5 (agree)"


def test_softmax_outputs_are_drawn_as_probabilities() -> None:
    logits = _logits(6, 5).astype(np.float64)
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    chart = charts.score_chart(probabilities, probabilities, [0, 1], [])
    assert chart.probabilities and chart.y_label == charts.PROBABILITY_AXIS and chart.y_limits == [(0.0, 1.0)] * 2
    assert chart.panels[0].title == "sample 0: FP32 0, INT8 0 (agree)"  # no labels: none claimed
    assert not charts.is_probabilities(probabilities * 0.9)  # rows that do not sum to 1 are scores


def test_many_classes_keep_the_label_and_both_top1_bars() -> None:
    fp32 = _logits(3, 1000)
    fp32[:, 500:520] = 5.0  # twenty classes score above the label
    int8 = _flip(fp32, [1])
    labels = np.array([0, 1, 999])
    fp32[2, 999] = -9.0  # the label of sample 2: the lowest score of all
    chart = charts.score_chart(fp32, int8, [1, 2], [], labels)
    first, second = chart.panels
    assert first.disagrees and {first.fp32_top1, first.int8_top1, 1} <= set(first.classes)
    assert 999 in second.classes and len(second.classes) == charts.MAX_BARS
    assert second.fp32[second.classes.index(999)] == -9.0


def test_the_deploy_chart_shows_disagreements_first_with_true_labels(tmp_path: Path) -> None:
    fp32 = _logits(40, 10)
    int8 = _flip(fp32, [7, 23, 31])
    x = np.random.default_rng(5).uniform(size=(40, 1, 16, 16)).astype(np.float32)
    validation, pulled = _write(tmp_path, x, {"logits": fp32}, {"logits": int8}, labels=np.arange(40) % 10,
                                classes=np.array([f"d{i}" for i in range(10)]))
    section = prediction_section(_recipe(tmp_path, ["N", 1, 16, 16], metric="top1"), "top1", validation, pulled)
    assert section.title == "FP32 vs INT8 predictions" and section.png.startswith(PNG)
    assert section.note == ("FP32 and INT8 pick different classes for 3 of 40 validation samples: all 3 are drawn first "
                            "(titles in red), then 1 where they agree; as raw scores, signed (the line marks 0).")
