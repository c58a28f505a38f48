"""Validation labels: from the data itself, an .npz of arrays indexed by sample, or a COCO-style .json of boxes.

Labels are class indices [N], another array [N, ...] (masks, texts, padded class-id sequences), or a dict of
such arrays (detection: ``boxes`` [N, K, 4] as x1, y1, x2, y2 in network-input pixels and ``labels`` [N, K],
-1 where an image has fewer than K boxes). In validation.npz they travel as ``labels`` or ``labels.<name>``.

A COCO file's boxes ([x, y, width, height] in image pixels) are scaled to the network input by
``preprocess.resize`` (image size from the file's ``images[].width/height``); its categories, ordered by id,
are the model's classes 0, 1, ...; crowd annotations are left out. Images are matched to the validation
folder's files by ``file_name`` (relative to the folder, or the bare name), or for .npz data by their order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.data import Dataset
from edgeq.errors import InputError
from edgeq.metrics import Labels
from edgeq.metrics.detection import Boxes, padded
from edgeq.recipe import Recipe

PREFIX = "labels."


@dataclass
class LoadedLabels:
    """The selected samples' labels and, for detection, the class names the COCO file gives."""

    labels: Labels
    class_names: list[str] = field(default_factory=list)


def load(recipe: Recipe, dataset: Dataset) -> LoadedLabels:
    """Labels of ``dataset``'s selected samples, from ``validation.labels`` when set, else from the data."""
    spec = recipe.validation.labels
    if spec is None:
        return LoadedLabels(dataset.labels)
    path = recipe.resolve(spec)
    if path.suffix == ".json":
        return _coco(recipe, path, dataset)
    if path.suffix == ".npz":
        return LoadedLabels(_npz(path, dataset))
    raise InputError(f"{recipe.source}: validation.labels: expected an .npz or a COCO-style .json, found {path}")


def _npz(path: Path, dataset: Dataset) -> Labels:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from None
    total = dataset.total
    wrong = [f"'{k}' {list(a.shape)}" for k, a in arrays.items() if a.ndim == 0 or len(a) != total]
    if not arrays or wrong:
        raise InputError(f"{path}: every array must hold one entry per sample of the validation data ({total}); found {', '.join(wrong) or 'none'}")
    picked = {name: array[dataset.order] for name, array in arrays.items()}
    return picked["labels"] if list(picked) == ["labels"] else picked


def _image_key(name: str) -> str:
    return name.replace("\\", "/").lstrip("./")


def _coco(recipe: Recipe, path: Path, dataset: Dataset) -> LoadedLabels:
    where = f"{path}"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        images, annotations = document["images"], document.get("annotations", [])
        categories = sorted(document.get("categories", []), key=lambda c: c["id"])
        by_image = {image["id"]: image for image in images}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{where}: not a COCO-style file with 'images' [{{id, file_name, width, height}}] ({exc})") from None
    class_of = {c["id"]: index for index, c in enumerate(categories)}
    if dataset.files:
        root = dataset.source
        keys = [_image_key(str(f.relative_to(root))) for f in dataset.files]
        ids: dict[str, int] = {}
        for image in images:
            ids.setdefault(_image_key(str(image.get("file_name", ""))), image["id"])
            ids.setdefault(Path(str(image.get("file_name", ""))).name, image["id"])
        missing = [k for k in keys if k not in ids and Path(k).name not in ids]
        if missing:
            raise InputError(f"{where}: no entry in 'images' for {len(missing)} validation image(s), e.g. {missing[0]}")
        chosen = [ids[k] if k in ids else ids[Path(k).name] for k in keys]
    else:
        if len(images) != dataset.total:
            raise InputError(f"{where}: {len(images)} images for {dataset.total} samples of .npz validation data (matched by order)")
        chosen = [images[int(i)]["id"] for i in dataset.order]
    boxes: dict[int, list[list[float]]] = {i: [] for i in chosen}
    classes: dict[int, list[int]] = {i: [] for i in chosen}
    for ann in annotations:
        if ann.get("image_id") not in boxes or ann.get("iscrowd", 0):
            continue
        if ann.get("category_id") not in class_of:
            raise InputError(f"{where}: annotation {ann.get('id')} has category_id {ann.get('category_id')} not in 'categories'")
        boxes[ann["image_id"]].append([float(v) for v in ann["bbox"]])
        classes[ann["image_id"]].append(class_of[ann["category_id"]])
    resize = recipe.preprocess.resize
    per_image = []
    for image_id in chosen:
        xywh = np.asarray(boxes[image_id], np.float64).reshape(-1, 4)
        if resize is not None:
            info = by_image[image_id]
            if not info.get("width") or not info.get("height"):
                raise InputError(f"{where}: image {image_id} needs 'width' and 'height' to scale its boxes to preprocess.resize")
            xywh = xywh * np.array([resize[1] / info["width"], resize[0] / info["height"]] * 2)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        per_image.append(Boxes(xyxy, np.asarray(classes[image_id], np.int64), np.ones(len(xyxy))))
    return LoadedLabels(padded(per_image), [str(c.get("name", c["id"])) for c in categories])


def columns(labels: Labels) -> dict[str, np.ndarray]:
    """The arrays that carry ``labels`` in validation.npz."""
    if labels is None:
        return {}
    if isinstance(labels, dict):
        return {PREFIX + name: np.asarray(array) for name, array in labels.items()}
    return {"labels": np.asarray(labels)}


def from_arrays(arrays: Mapping[str, np.ndarray]) -> Labels:
    """Labels back from validation.npz's arrays (the inverse of :func:`columns`)."""
    named = {key[len(PREFIX):]: np.asarray(arrays[key]) for key in arrays if key.startswith(PREFIX)}
    if named:
        return named
    return np.asarray(arrays["labels"]) if "labels" in arrays else None


def is_label_array(name: str) -> bool:
    """Whether a validation.npz array carries labels or class names (not a network input)."""
    return name in ("labels", "classes") or name.startswith(PREFIX)
