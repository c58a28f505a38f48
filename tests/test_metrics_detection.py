"""Detector outputs to boxes, and COCO mAP equal to pycocotools' on the same detections and labels."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from edgeq.metrics.detection import Boxes, coco_map, confident, decode, f1, iou_matrix, nms, padded, truth_boxes
from edgeq.recipe import DetectionOptions


def _yolo(boxes_cxcywh: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """One image's YOLOv8-style output [1, 4+C, A] from [A, 4] boxes and [A, C] scores."""
    return np.concatenate([boxes_cxcywh, scores], axis=1).T[None].astype(np.float32)


def test_nms_keeps_the_best_of_overlapping_boxes_per_class() -> None:
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], float)
    assert list(nms(xyxy, np.array([0.9, 0.8, 0.7, 0.95]), 0.5)) == [3, 2]
    boxes = np.array([[20, 20, 10, 10], [20.5, 20.5, 10, 10], [20, 20, 10, 10]], float)  # cx, cy, w, h; IoU 0.82
    scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]])  # the third box is another class: NMS keeps it
    boxes, scores = np.concatenate([boxes, np.ones((8, 4))]), np.concatenate([scores, np.zeros((8, 2))])  # 11 anchors
    (image,) = decode({"out": _yolo(boxes, scores)}, DetectionOptions())
    assert list(image.classes) == [0, 1] and list(image.scores) == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(image.xyxy[0], [15, 15, 25, 25])


def test_yolo_output_of_either_orientation_and_boxes_scores_outputs_decode_alike() -> None:
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(40, 90, (40, 2)), rng.uniform(20, 60, (40, 2))], axis=1)  # crowded: NMS bites
    scores = rng.uniform(0, 1, (40, 3)) ** 4
    channels_first = decode({"o": _yolo(boxes, scores)}, DetectionOptions())
    anchors_first = decode({"o": _yolo(boxes, scores).transpose(0, 2, 1)}, DetectionOptions())
    xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
    split = decode({"boxes": xyxy[None], "scores": scores.T[None]}, DetectionOptions())  # scores [N, C, A]
    for other in (anchors_first, split):
        np.testing.assert_allclose(other[0].xyxy, channels_first[0].xyxy, rtol=1e-5)  # float32 vs float64 corners
        assert list(other[0].classes) == list(channels_first[0].classes)
    assert 0 < len(channels_first[0]) < 40
    with pytest.raises(ValueError, match=r"YOLO-style output is \[N, 4\+C, A\]"):
        decode({"o": np.zeros((1, 3, 8), np.float32)}, DetectionOptions(format="yolo"))


def _random_set(seed: int, images: int, classes: int) -> tuple[list[Boxes], list[Boxes]]:
    """Labels and noisy detections around them, plus false positives, ties and empty images."""
    rng = np.random.default_rng(seed)
    truth, found = [], []
    for index in range(images):
        count = 0 if index % 7 == 3 else int(rng.integers(1, 6))
        xy = rng.uniform(0, 200, (count, 2))
        gt = np.concatenate([xy, xy + rng.uniform(8, 80, (count, 2))], axis=1)
        gt_classes = rng.integers(0, classes, count)
        truth.append(Boxes(gt, gt_classes, np.ones(count)))
        jitter = gt + rng.normal(0, 6, gt.shape)
        extra = int(rng.integers(0, 8))
        xy = rng.uniform(0, 200, (extra, 2))
        false = np.concatenate([xy, xy + rng.uniform(8, 80, (extra, 2))], axis=1)
        det = np.concatenate([jitter, false])
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
        det_classes = np.concatenate([np.where(rng.uniform(size=count) < 0.85, gt_classes, rng.integers(0, classes, count)),
                                      rng.integers(0, classes, extra)])
        scores = np.round(rng.uniform(0.01, 1, count + extra), 2)  # rounded: ties across images
        found.append(Boxes(det, det_classes, scores))
    return found, truth


def _pycocotools(found: list[Boxes], truth: list[Boxes], classes: int) -> tuple[float, float]:
    pytest.importorskip("pycocotools", reason="pip install -e '.[test]' brings pycocotools, the reference")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box: np.ndarray) -> list[float]:
        return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]

    annotations = []
    for i, image in enumerate(truth):
        for b, c in zip(image.xyxy, image.classes, strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(c), "bbox": xywh(b),
                                "iscrowd": 0, "area": float((b[2] - b[0]) * (b[3] - b[1]))})
    dataset = {"images": [{"id": i} for i in range(len(truth))], "annotations": annotations,
               "categories": [{"id": c} for c in range(classes)]}
    results = [{"image_id": i, "category_id": int(c), "bbox": xywh(b), "score": float(s)}
               for i, image in enumerate(found) for b, c, s in zip(image.xyxy, image.classes, image.scores, strict=True)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0]), float(evaluation.stats[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_map_equals_pycocotools(seed: int) -> None:
    found, truth = _random_set(seed, images=12, classes=4)
    ours = coco_map(found, truth)
    reference = _pycocotools(found, truth, classes=4)
    assert 0.05 < ours[0] < ours[1] < 0.95  # a set that is neither trivial nor hopeless
    assert ours == pytest.approx(reference, abs=1e-12)


def test_more_than_100_detections_per_image_and_class_are_cut_as_in_pycocotools() -> None:
    rng = np.random.default_rng(5)
    gt = np.array([[10, 10, 50, 50], [100, 100, 150, 160]], float)
    xy = rng.uniform(0, 150, (130, 2))
    det = np.concatenate([xy, xy + 40], axis=1)
    det[-1], det[-2] = gt[0], gt[1]  # the two hits score lowest: beyond the 100th they do not count
    scores = np.linspace(0.99, 0.1, 130)
    found, truth = [Boxes(det, np.zeros(130, np.int64), scores)], [Boxes(gt, np.zeros(2, np.int64), np.ones(2))]
    assert coco_map(found, truth) == pytest.approx(_pycocotools(found, truth, 1), abs=1e-12)


def test_hand_checked_map_and_f1() -> None:
    truth = [Boxes(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0, 0]), np.ones(2))]
    # one exact hit (score 0.9), one miss elsewhere (0.8), the second box never found
    found = [Boxes(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float), np.array([0, 0]), np.array([0.9, 0.8]))]
    full, half = coco_map(found, truth)
    # precision is 1 up to recall 0.5 and there is no higher recall: 51 of 101 recall points score 1
    assert half == pytest.approx(51 / 101) and full == pytest.approx(51 / 101)
    assert f1(found, truth) == pytest.approx(2 * 1 / (2 + 2))
    assert f1(truth, truth) == 1.0 and f1([Boxes.empty()], [Boxes.empty()]) == 1.0
    assert iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(50 / 150)


def test_padded_labels_round_trip() -> None:
    images = [Boxes(np.array([[1, 2, 3, 4.0]]), np.array([2]), np.ones(1)), Boxes.empty()]
    arrays = padded(images)
    assert arrays["boxes"].shape == (2, 1, 4) and arrays["labels"].tolist() == [[2], [-1]]
    back = truth_boxes(arrays)
    assert len(back[0]) == 1 and len(back[1]) == 0 and back[0].xyxy.tolist() == [[1, 2, 3, 4]]
    with pytest.raises(ValueError, match="need arrays 'boxes'"):
        truth_boxes({"boxes": arrays["boxes"]})


def test_confident_boxes_equal_decoding_everything_then_cutting() -> None:
    rng = np.random.default_rng(4)
    boxes = np.concatenate([rng.uniform(30, 90, (300, 2)), rng.uniform(10, 50, (300, 2))], axis=1)
    output = {"o": _yolo(boxes, rng.uniform(0, 1, (300, 5)) ** 3)}
    options = DetectionOptions(confidence=0.3)
    (everything,) = [b.above(0.3) for b in decode(output, options)]
    (cut,) = confident(output, options)
    assert 0 < len(cut) == len(everything)
    np.testing.assert_array_equal(cut.xyxy, everything.xyxy)
