"""Detector outputs to boxes (YOLO-style or boxes/scores, then per-class NMS), COCO mAP and box F1.

:func:`coco_map` follows pycocotools' COCOeval for boxes step by step (greedy matching in score order at
ten IoU thresholds, at most 100 detections per image and class, 101-point interpolated precision, the mean
over classes that have ground truth), so the numbers are the same as pycocotools' ``stats[0]`` and
``stats[1]``; tests/test_metrics_detection.py checks that against pycocotools itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.recipe import DetectionOptions

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_PER_CLASS = 100  # pycocotools' maxDets for AP: detections per image and class


@dataclass(frozen=True)
class Boxes:
    """Boxes of one image: ``xyxy`` [K, 4] in input pixels, ``classes`` [K], ``scores`` [K] (1 for ground truth)."""

    xyxy: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))

    def __len__(self) -> int:
        return len(self.classes)

    def above(self, confidence: float) -> Boxes:
        keep = self.scores >= confidence
        return Boxes(self.xyxy[keep], self.classes[keep], self.scores[keep])


def to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """[..., 4] boxes in ``cxcywh``, ``xywh`` or ``xyxy`` as x1, y1, x2, y2 (float64)."""
    b = boxes.astype(np.float64)
    if box_format == "xyxy":
        return b
    if box_format == "xywh":
        return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)
    half = b[..., 2:] / 2
    return np.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [M, 4] with every box in ``b`` [K, 4] (xyxy), as pycocotools computes it."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.where((width > 0) & (height > 0), width * height, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(xyxy: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou_matrix(xyxy[best : best + 1], xyxy[rest])[0] <= iou]
    return np.asarray(keep, np.int64)


def _class_nms(xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """NMS within each class at once: boxes of different classes are moved apart so they never overlap."""
    if not len(scores):
        return np.zeros(0, np.int64)
    span = float(np.abs(xyxy).max()) * 2 + 1
    return nms(xyxy + (classes * span)[:, None], scores, iou)


def _raw_boxes_and_scores(outputs: dict[str, np.ndarray], options: DetectionOptions) -> tuple[np.ndarray, np.ndarray, str]:
    """([N, A, 4] boxes, [N, A, C] scores, box format) from the model's outputs as the options describe."""
    names = list(outputs)
    fmt = options.format
    if fmt == "auto":
        fmt = "boxes_scores" if options.boxes or (len(names) >= 2 and any(outputs[n].shape[-1:] == (4,) for n in names)) else "yolo"
    if fmt == "yolo":
        name = options.output or names[0]
        if name not in outputs:
            raise ValueError(f"validation.detection.output: no output named {name!r} (outputs: {', '.join(names)})")
        raw = outputs[name]
        if raw.ndim != 3 or min(raw.shape[1:]) < 5:
            raise ValueError(f"output {name!r} has shape {list(raw.shape)}; a YOLO-style output is [N, 4+C, A] or [N, A, 4+C]")
        if raw.shape[1] < raw.shape[2]:  # [N, 4+C, A]: fewer channels than anchors
            raw = raw.transpose(0, 2, 1)
        return raw[..., :4], raw[..., 4:], options.box_format or "cxcywh"
    boxes_name = options.boxes or next((n for n in names if outputs[n].shape[-1:] == (4,)), None)
    scores_name = options.scores or next((n for n in names if n != boxes_name), None)
    if boxes_name not in outputs or scores_name not in outputs:
        raise ValueError(
            f"validation.detection: boxes/scores outputs {boxes_name!r}/{scores_name!r} not among the outputs {', '.join(names)}"
        )
    boxes, scores = outputs[boxes_name], outputs[scores_name]
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes output {boxes_name!r} has shape {list(boxes.shape)}, expected [N, A, 4]")
    anchors = boxes.shape[1]
    if scores.ndim == 2:
        scores = scores[..., None]
    elif scores.ndim == 3 and scores.shape[1] != anchors and scores.shape[2] == anchors:
        scores = scores.transpose(0, 2, 1)
    if scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"scores output {scores_name!r} has shape {list(outputs[scores_name].shape)}, expected [N, {anchors}, C]")
    return boxes, scores, options.box_format or "xyxy"


def decode(outputs: dict[str, np.ndarray], options: DetectionOptions) -> list[Boxes]:
    """Per image, the boxes above ``score_threshold`` after per-class NMS, at most ``max_detections``."""
    boxes, scores, box_format = _raw_boxes_and_scores(outputs, options)
    images = []
    for image_boxes, image_scores in zip(boxes, scores.astype(np.float64), strict=True):
        classes = image_scores.argmax(axis=1)
        best = image_scores[np.arange(len(classes)), classes]
        picked = np.flatnonzero(best > options.score_threshold)
        xyxy = to_xyxy(image_boxes[picked], box_format)
        keep = _class_nms(xyxy, best[picked], classes[picked], options.nms_iou)[: options.max_detections]
        images.append(Boxes(xyxy[keep], classes[picked][keep].astype(np.int64), best[picked][keep]))
    return images


def confident(outputs: dict[str, np.ndarray], options: DetectionOptions) -> list[Boxes]:
    """Per image, the boxes scoring at least ``confidence``: the same as decoding everything and cutting after
    NMS (a box is only ever suppressed by a higher-scoring one), without the low-scoring rest."""
    threshold = np.nextafter(options.confidence, -np.inf)  # decode keeps scores above its threshold
    cut = options.model_copy(update={"score_threshold": max(options.score_threshold, float(threshold))})
    return [b.above(options.confidence) for b in decode(outputs, cut)]


def truth_boxes(labels: dict[str, np.ndarray]) -> list[Boxes]:
    """Ground truth per image from padded label arrays: ``boxes`` [N, K, 4] xyxy and ``labels`` [N, K] (-1 pads)."""
    if not isinstance(labels, dict) or "boxes" not in labels or "labels" not in labels:
        found = sorted(labels) if isinstance(labels, dict) else type(labels).__name__
        raise ValueError(f"detection labels need arrays 'boxes' [N, K, 4] and 'labels' [N, K] (found {found})")
    boxes, classes = np.asarray(labels["boxes"], np.float64), np.asarray(labels["labels"]).astype(np.int64)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or classes.shape != boxes.shape[:2]:
        raise ValueError(f"detection labels: 'boxes' {list(boxes.shape)} and 'labels' {list(classes.shape)} must be [N, K, 4] and [N, K]")
    images = []
    for image_boxes, image_classes in zip(boxes, classes, strict=True):
        real = image_classes >= 0
        images.append(Boxes(image_boxes[real], image_classes[real], np.ones(int(real.sum()))))
    return images


def padded(images: list[Boxes]) -> dict[str, np.ndarray]:
    """The inverse of :func:`truth_boxes`: per-image boxes as padded ``boxes`` and ``labels`` arrays."""
    width = max((len(b) for b in images), default=0)
    boxes = np.zeros((len(images), width, 4))
    classes = np.full((len(images), width), -1, np.int64)
    for row, image in enumerate(images):
        boxes[row, : len(image)] = image.xyxy
        classes[row, : len(image)] = image.classes
    return {"boxes": boxes, "labels": classes}


def _match(ious: np.ndarray, threshold: float) -> np.ndarray:
    """pycocotools' greedy matching: each detection (score order) takes the best free ground truth with IoU >= t."""
    taken = np.zeros(ious.shape[1], bool)
    matched = np.zeros(ious.shape[0], bool)
    for d in range(ious.shape[0]):
        best, m = min(threshold, 1 - 1e-10), -1
        for g in range(ious.shape[1]):
            if taken[g] or ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m >= 0:
            taken[m] = matched[d] = True
    return matched


def coco_map(detections: list[Boxes], truth: list[Boxes]) -> tuple[float, float]:
    """(mAP@0.5:0.95, mAP@0.5) in 0..1, as pycocotools' COCOeval; -1 when no class has ground truth."""
    if len(detections) != len(truth):
        raise ValueError(f"{len(detections)} images of detections for {len(truth)} images of labels")
    classes = sorted({int(c) for image in truth for c in image.classes})
    precision = -np.ones((len(IOU_THRESHOLDS), len(RECALL_POINTS), len(classes)))
    for k, cls in enumerate(classes):
        scores, matches, positives = [], [], 0
        for det, gt in zip(detections, truth, strict=False):
            mine = det.classes == cls
            order = np.argsort(-det.scores[mine], kind="mergesort")[:MAX_PER_CLASS]
            boxes, image_scores = det.xyxy[mine][order], det.scores[mine][order]
            gt_boxes = gt.xyxy[gt.classes == cls]
            positives += len(gt_boxes)
            ious = iou_matrix(boxes, gt_boxes)
            matches.append(np.stack([_match(ious, t) for t in IOU_THRESHOLDS]).reshape(len(IOU_THRESHOLDS), len(boxes)))
            scores.append(image_scores)
        order = np.argsort(-np.concatenate(scores), kind="mergesort")
        matched = np.concatenate(matches, axis=1)[:, order]
        tp = np.cumsum(matched, axis=1, dtype=np.float64)
        fp = np.cumsum(~matched, axis=1, dtype=np.float64)
        for t in range(len(IOU_THRESHOLDS)):
            recall = tp[t] / positives
            prec = tp[t] / (fp[t] + tp[t] + np.spacing(1))
            prec = np.maximum.accumulate(prec[::-1])[::-1]  # the precision envelope
            where = np.searchsorted(recall, RECALL_POINTS, side="left")
            row = np.zeros(len(RECALL_POINTS))
            inside = where < len(prec)
            row[inside] = prec[where[inside]]
            precision[t, :, k] = row
    valid = precision > -1
    if not valid.any():
        return -1.0, -1.0
    return float(precision[valid].mean()), float(precision[0][valid[0]].mean())


def f1(detections: list[Boxes], truth: list[Boxes], iou: float = 0.5) -> float:
    """F1 (0..1) of detections matched one-to-one, same class and IoU >= ``iou``, to the reference boxes."""
    hits = found = expected = 0
    for det, gt in zip(detections, truth, strict=False):
        found += len(det)
        expected += len(gt)
        for cls in np.unique(det.classes):
            mine, theirs = det.classes == cls, gt.classes == cls
            order = np.argsort(-det.scores[mine], kind="mergesort")
            hits += int(_match(iou_matrix(det.xyxy[mine][order], gt.xyxy[theirs]), iou).sum())
    return 1.0 if found + expected == 0 else 2.0 * hits / (found + expected)
