"""Task decoders for the field models' outputs, written for the tests: detections, text boxes, CTC text, CER.

- :func:`yolo_detections`: YOLOv8 output [N, 4 + classes, anchors] -> per image (boxes xyxy, class ids),
  score >= 0.25, class-wise NMS at IoU 0.45 (nudenet decodes with 0.2 / 0.45);
- :func:`db_boxes`: DBNet probability map [N, 1, H, W] -> per image the boxes of its connected regions
  above 0.3 (PP-OCR's threshold) of at least :data:`MIN_TEXT_PIXELS` pixels;
- :func:`kept_share`: the share of FP32's boxes that INT8 finds too (same class, IoU >= 0.5);
- :func:`ctc_decode` and :func:`cer`: greedy CTC over PP-OCR's character list, character error rate in percent
  (IoU, NMS, CTC decoding and CER are edgeq's own, :mod:`edgeq.metrics`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeq.metrics import detection, text

MIN_TEXT_PIXELS = 20


def yolo_detections(output: np.ndarray, score: float = 0.25, nms: float = 0.45) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: (boxes [k, 4] xyxy, class ids [k])."""
    found = []
    for rows in np.asarray(output).transpose(0, 2, 1):
        classes, best = rows[:, 4:].argmax(axis=1), rows[:, 4:].max(axis=1)
        rows, classes, best = rows[best >= score], classes[best >= score], best[best >= score]
        cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        keep = [int(i) for c in np.unique(classes)
                for i in np.nonzero(classes == c)[0][detection.nms(boxes[classes == c], best[classes == c], nms)]]
        found.append((boxes[keep], classes[keep]))
    return found


def db_boxes(probability: np.ndarray, threshold: float = 0.3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: (boxes [k, 4] of the connected regions above ``threshold``, zeros as class ids)."""
    from scipy import ndimage

    found = []
    for plane in np.asarray(probability)[:, 0]:
        labelled, _ = ndimage.label(plane > threshold)
        boxes = [
            (s[1].start, s[0].start, s[1].stop, s[0].stop)
            for index, s in enumerate(ndimage.find_objects(labelled), start=1)
            if s is not None and (labelled[s] == index).sum() >= MIN_TEXT_PIXELS
        ]
        array = np.asarray(boxes, np.float32).reshape(-1, 4)
        found.append((array, np.zeros(len(array), np.int64)))
    return found


def kept_share(fp32: list[tuple[np.ndarray, np.ndarray]], int8: list[tuple[np.ndarray, np.ndarray]], threshold: float = 0.5) -> tuple[int, int]:
    """(FP32 boxes matched one-to-one by an INT8 box of the same class with IoU >= ``threshold``, FP32 boxes)."""
    matched = total = 0
    for (want, want_cls), (got, got_cls) in zip(fp32, int8, strict=True):
        total += len(want)
        if not len(want) or not len(got):
            continue
        overlaps = detection.iou_matrix(want, got) * (want_cls[:, None] == got_cls[None, :])
        used: set[int] = set()
        for row in np.argsort(-overlaps.max(axis=1)):
            candidates = [j for j in np.argsort(-overlaps[row]) if j not in used and overlaps[row, j] >= threshold]
            if candidates:
                used.add(int(candidates[0]))
                matched += 1
    return matched, total


def ctc_decode(probabilities: np.ndarray, characters: list[str]) -> list[str]:
    """Greedy CTC: index 0 is the blank, index i the character ``characters[i - 1]``; repeats collapse."""
    return ["".join(characters[i - 1] for i in ids if i - 1 < len(characters)) for ids in text.greedy_decode(probabilities, 0)]


def cer(predicted: list[str], truth: list[str]) -> float:
    """Character error rate in percent (edgeq's CTC metric, on characters)."""
    return 100.0 * text.cer([list(p) for p in predicted], [list(t) for t in truth])


def ppocr_characters(model_path: Path) -> list[str]:
    """PP-OCR's character list from the rec model's metadata (``character``), plus the space it appends."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    listed = next(p.value for p in model.metadata_props if p.key == "character")
    return listed.splitlines() + [" "]


def rec_model() -> Path:
    from tests.field_data import package_file

    return package_file("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx")
