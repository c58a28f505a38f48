"""Recipes for the field models of the `test` extra, written into a folder: data as .npz, a built-in task metric.

The validation .npz files carry no labels: each metric compares INT8 with FP32 (edgeq's `box_f1` for the
detector, `miou` of the text probability map cut at PP-OCR's 0.3, `cer` of INT8's text against FP32's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from tests import field_data as fd

MODELS = {
    "yolov8n": ("nudenet", "320n.onnx", "images", {"metric": "detection", "detection": {"format": "yolo", "nms_iou": 0.45}}),
    "ppocr-det": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", "x", {"metric": "miou", "segmentation": {"threshold": 0.3}}),
    "ppocr-rec": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", "x", {"metric": "cer"}),
}


def samples(kind: str, count: int, seed: int) -> np.ndarray:
    """``count`` inputs for ``kind`` (disjoint for different seeds)."""
    if kind == "yolov8n":
        return np.stack([fd.letterbox_square(image) for image in fd.face_images(count, seed)])
    if kind == "ppocr-det":
        return fd.text_pages(count, seed)
    return fd.text_lines(count, seed)[0]


def write_recipe(folder: Path, kind: str, calibration: int, validation: int, budget: float = 1.0, **calibration_fields) -> Path:
    """A recipe for ``kind`` in ``folder`` with .npz data (seeds 1 and 2) and its task metric; its path."""
    package, relative, input_name, metric = MODELS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    cal, val = samples(kind, calibration, 1), samples(kind, validation, 2)
    np.savez(folder / "calibration.npz", **{input_name: cal})
    np.savez(folder / "validation.npz", **{input_name: val})
    recipe = {
        "name": kind,
        "model": str(fd.package_file(package, relative)),
        "inputs": [{"name": input_name, "shape": ["N", *cal.shape[1:]]}],
        "calibration": {"path": "calibration.npz", "batch_size": 8, **calibration_fields},
        "validation": {"path": "validation.npz", **metric},
        "budget": {"accuracy_drop": budget},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
