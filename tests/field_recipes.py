"""Recipes for the field models of the `test` extra, written into a folder: data as .npz, a task metric against FP32.

The validation .npz files carry no labels: each metric receives FP32's outputs in their place and says how
much of FP32's result INT8 keeps (detections matched by IoU >= 0.5, or 100 minus the CER difference).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from tests import field_data as fd

METRICS = '''
import numpy as np
from tests import field_tasks as ft

def kept_detections(scores, fp32):
    matched, total = ft.kept_share(ft.yolo_detections(fp32), ft.yolo_detections(scores))
    return 100.0 * matched / max(total, 1)

def kept_text_boxes(scores, fp32):
    matched, total = ft.kept_share(ft.db_boxes(fp32), ft.db_boxes(scores))
    return 100.0 * matched / max(total, 1)

def text_agreement(scores, fp32):
    """100 minus the CER of INT8's text against FP32's text."""
    characters = ft.ppocr_characters(ft.rec_model())
    return 100.0 - ft.cer(ft.ctc_decode(scores, characters), ft.ctc_decode(fp32, characters))
'''

MODELS = {
    "yolov8n": ("nudenet", "320n.onnx", "images", "kept_detections"),
    "ppocr-det": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", "x", "kept_text_boxes"),
    "ppocr-rec": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", "x", "text_agreement"),
}


def samples(kind: str, count: int, seed: int) -> np.ndarray:
    """``count`` inputs for ``kind`` (disjoint for different seeds)."""
    if kind == "yolov8n":
        return np.stack([fd.letterbox_square(image) for image in fd.face_images(count, seed)])
    if kind == "ppocr-det":
        return fd.text_pages(count, seed)
    return fd.text_lines(count, seed)[0]


def write_recipe(folder: Path, kind: str, calibration: int, validation: int, budget: float = 1.0, **calibration_fields) -> Path:
    """A recipe for ``kind`` in ``folder`` with .npz data (seeds 1 and 2) and the task metric; its path."""
    package, relative, input_name, metric = MODELS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    cal, val = samples(kind, calibration, 1), samples(kind, validation, 2)
    np.savez(folder / "calibration.npz", **{input_name: cal})
    np.savez(folder / "validation.npz", **{input_name: val})
    (folder / "metrics.py").write_text(METRICS)
    recipe = {
        "name": kind,
        "model": str(fd.package_file(package, relative)),
        "inputs": [{"name": input_name, "shape": ["N", *cal.shape[1:]]}],
        "calibration": {"path": "calibration.npz", "batch_size": 8, **calibration_fields},
        "validation": {"path": "validation.npz", "metric": f"metrics.py:{metric}"},
        "budget": {"accuracy_drop": budget},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
