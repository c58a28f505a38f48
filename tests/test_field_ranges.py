"""The default calibration keeps field models' task results, on held-out data (issue 16's "what it must show").

Models shipped by packages of the `test` extra: YOLOv8n (nudenet 3.4.2), PP-OCRv4 det and rec
(rapidocr-onnxruntime 1.4.4). Data: tests/field_data.py (faces pasted onto photos, rendered text).
Each INT8 model written by `calibrate` is scored with the task's own decoder against FP32 on samples
neither calibration nor validation saw (seed 3).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeq import recipe as recipe_module
from edgeq import targets
from edgeq.calibrate import calibrate
from edgeq.calibrate.cache import parse_cache
from edgeq.calibrate.host import host_arithmetic, prediction_model
from edgeq.calibrate.predict import outputs, slices
from tests import field_data as fd
from tests import field_tasks as ft
from tests.cli import run_edgeq
from tests.field_recipes import samples, write_recipe

pytestmark = pytest.mark.slow
ORIN = "agx-orin-jp6.2"  # TensorRT 10.3: explicit Q/DQ, TensorRT's placement
HELD_OUT = 3


def _fp32_and_int8(folder: Path, target: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first output of model.fp32.onnx and of the INT8 model as the target runs it, on ``x``."""
    qdq = onnx.load(folder / "model.qdq.onnx")
    int8 = prediction_model(qdq, targets.resolve(target).backend, host_arithmetic().verdict)
    fp32, quantized = outputs([(folder / "model.fp32.onnx").read_bytes(), int8], slices(x, 8))
    return next(iter(fp32.values())), next(iter(quantized.values()))


def _calibrated(tmp_path: Path, kind: str, target: str, calibration: int, validation: int, **fields) -> tuple[Path, dict]:
    path = write_recipe(tmp_path, kind, calibration, validation, **fields)
    result = calibrate(recipe_module.load(path), targets.resolve(target), progress=False)
    return result.folder, result.report.model_dump(mode="json")


@pytest.mark.parametrize("target", [ORIN, "local"])
def test_yolov8n_keeps_fp32_detections_by_default(tmp_path: Path, target: str) -> None:
    folder, report = _calibrated(tmp_path, "yolov8n", target, 32, 32)
    ranges = json.loads((folder / "ranges.json").read_text())["tensors"]
    scores = [name for name, entry in ranges.items() if entry["why"].startswith("feeds output 'output0' through Sigmoid")]
    assert scores and all(ranges[name]["method"] == "minmax" for name in scores)  # never clipped below 1
    assert report["range_choice"]["method"] != "entropy" and "entropy dropped" in report["range_choice"]["why"]
    if (folder / "calibration.cache").is_file():  # implicit INT8 on a device reads the same ranges
        cache = parse_cache((folder / "calibration.cache").read_text()).scales
        cached = [name for name in scores if name in cache]
        assert cached and all(cache[name] * 127 == pytest.approx(ranges[name]["amax"], rel=1e-6) for name in cached)
        assert all(ranges[name]["amax"] > 0.5 for name in cached)  # entropy gave the scores 0.084

    fp32, int8 = _fp32_and_int8(folder, target, samples("yolov8n", 16, HELD_OUT))
    matched, total = ft.kept_share(ft.yolo_detections(fp32), ft.yolo_detections(int8))
    print(f"\nyolov8n {target}: INT8 keeps {matched} of {total} FP32 detections; {report['range_choice']['why']}")
    assert total >= 16  # FP32 finds the faces
    assert matched >= 0.9 * total, (matched, total, report["range_choice"])


@pytest.mark.parametrize("target", [ORIN, "local"])
def test_ppocr_det_keeps_fp32_text_boxes_by_default(tmp_path: Path, target: str) -> None:
    folder, _ = _calibrated(tmp_path, "ppocr-det", target, 16, 8)
    fp32, int8 = _fp32_and_int8(folder, target, samples("ppocr-det", 8, HELD_OUT))
    matched, total = ft.kept_share(ft.db_boxes(fp32), ft.db_boxes(int8))
    print(f"\nppocr-det {target}: INT8 keeps {matched} of {total} FP32 text boxes")
    assert total >= 24  # three or more lines per page
    assert matched >= 0.9 * total, (matched, total)


@pytest.mark.parametrize("target", [ORIN, "local"])
def test_ppocr_rec_keeps_the_character_error_rate_by_default(tmp_path: Path, target: str) -> None:
    folder, report = _calibrated(tmp_path, "ppocr-rec", target, 16, 16, budget=2.0)
    x, truth = fd.text_lines(48, HELD_OUT)
    fp32, int8 = _fp32_and_int8(folder, target, x)
    characters = ft.ppocr_characters(ft.rec_model())
    fp32_cer, int8_cer = ft.cer(ft.ctc_decode(fp32, characters), truth), ft.cer(ft.ctc_decode(int8, characters), truth)
    print(f"\nppocr-rec {target}: CER FP32 {fp32_cer:.2f} %, INT8 {int8_cer:.2f} %; {report['range_choice']['why']}")
    assert fp32_cer < 5.0  # FP32 reads the rendered text
    assert int8_cer - fp32_cer <= 1.5, (fp32_cer, int8_cer, report["range_choice"])


def test_fit_budget_on_a_model_that_misses_it_ends_in_minutes_and_widens_ranges_first(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "yolov8n", 16, 16, method="entropy")  # entropy clips the head: misses the budget
    started = time.perf_counter()
    result = run_edgeq("calibrate", path, "--target", ORIN, "--fit-budget", "--json")
    seconds = time.perf_counter() - started
    report = json.loads(result.stdout)["report"]
    print(f"\n--fit-budget: {seconds:.0f} s, {len(report['fit']['trials'])} trials, {len(report['widened'])} widened,"
          f" {len(report['kept_high_precision'])} kept in float: {report['fit']['why']}")
    assert seconds < 600, seconds
    assert report["fit"]["trials"] and report["widened"], report["fit"]
    assert report["fit"]["met"] == report["accuracy"]["passed"] and (result.code == 0) == report["fit"]["met"]
    assert report["fit"]["met"] or report["fit"]["why"].startswith(("cannot be met in INT8", "stopped at the bound of"))
    assert len(report["kept_high_precision"]) < len(report["quantized_layers"]) + len(report["kept_high_precision"])
    ranges = json.loads((tmp_path / "edgeq-out" / "yolov8n" / ORIN / "ranges.json").read_text())["tensors"]
    assert all(ranges[name]["method"] == "minmax" and "widened by --fit-budget" in ranges[name]["why"] for name in report["widened"])
