"""The recipe's validation metric: a built-in task metric, or ``file.py:function`` from the recipe's folder.

Every metric receives ``(outputs, labels)``: ``outputs`` maps each model output's name to its array over
all validation samples [N, ...]; ``labels`` is what the validation data carries (class indices [N], a dict
of arrays such as detection ``boxes``/``labels``, masks [N, H, W], texts [N]). It returns a number.

Built in (``validation.metric``):

- ``top1``, ``top5``: class scores [N, C] against class labels (percent).
- ``map50``, ``map50_95``: detector outputs decoded (``validation.detection``) against boxes, COCO mAP (percent).
- ``box_f1``: detections of the model against those of FP32 (percent). ``detection`` is ``map50_95`` when
  there are labels and ``box_f1`` when there are none.
- ``miou``: masks, mean IoU (percent) against label masks, or against FP32's masks without labels.
- ``cer``: CTC outputs, character error rate (percent, lower is better) against texts, or against FP32's.
- ``fidelity``: any outputs: the lowest per-output cosine similarity to FP32 (percent); per-output SNR too.
- ``auto`` (the default): ``top1`` when the labels are class indices, else ``fidelity``.

Metrics that compare with FP32 take their labels from the FP32 outputs (:attr:`Metric.reference`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.errors import InputError
from edgeq.metrics import classification, detection, fidelity, segmentation, text
from edgeq.recipe import Recipe, ValidationSpec, metric_file

Outputs = dict[str, np.ndarray]
Labels = np.ndarray | dict[str, np.ndarray] | None


@dataclass(frozen=True)
class Scores:
    """A metric on FP32 and on INT8 outputs, the points lost, and secondary numbers for each."""

    fp32: float
    int8: float
    drop: float
    details: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    """A named metric. ``reference`` makes its labels from FP32's outputs (metrics against FP32);
    ``details`` gives secondary numbers (mAP@0.5 beside mAP@0.5:0.95, per-output SNR)."""

    name: str
    function: Callable[[Outputs, Any], float]
    path: Path | None = None
    higher_is_better: bool = True
    reference: Callable[[Outputs], Any] | None = None
    details: Callable[[Outputs, Any], dict[str, float]] | None = None

    def _guarded(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 (a recipe's metric may raise anything: reported with its name)
            raise InputError(f"validation.metric {self.name} {what} raised {exc.__class__.__name__}: {exc}") from None

    def __call__(self, outputs: Outputs, labels: Any) -> float:
        value = self._guarded("", lambda: self.function(outputs, labels))
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"validation.metric {self.name} must return a number, returned {value!r}") from None
        if not math.isfinite(number):
            raise InputError(f"validation.metric {self.name} returned {number}, expected a finite number")
        return number

    def compare(self, fp32: Outputs, int8: Outputs, labels: Labels) -> Scores:
        """The metric on both; the drop is in the metric's points, positive when INT8 is worse."""
        reference = self.reference
        if reference is not None:
            labels = self._guarded("(reading FP32's outputs)", lambda: reference(fp32))
        before, after = self(fp32, labels), self(int8, labels)
        details = {}
        if self.details is not None:
            for kind, outputs in (("fp32", fp32), ("int8", int8)):
                found = self._guarded("(details)", partial(self.details, outputs, labels))
                details[kind] = {k: float(v) for k, v in found.items() if math.isfinite(v)}
        drop = before - after if self.higher_is_better else after - before
        return Scores(before, after, drop, details)


def _output(outputs: Outputs, name: str | None) -> np.ndarray:
    if name is None:
        return next(iter(outputs.values()))
    if name not in outputs:
        raise ValueError(f"validation.output: no output named {name!r} (outputs: {', '.join(outputs)})")
    return outputs[name]


def _is_class_labels(labels: Labels) -> bool:
    return isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu"


def _detection(spec: ValidationSpec, kind: str) -> Metric:
    options = spec.detection

    def boxes(outputs: Outputs) -> list[detection.Boxes]:
        return detection.decode(outputs, options)

    def both_maps(outputs: Outputs, labels: Any) -> tuple[float, float]:
        return detection.coco_map(boxes(outputs), detection.truth_boxes(labels))

    def details(outputs: Outputs, labels: Any) -> dict[str, float]:
        full, half = both_maps(outputs, labels)
        return {"map50_95": 100.0 * full, "map50": 100.0 * half}

    if kind == "box_f1":
        return Metric(
            "box_f1",
            lambda outputs, ref: 100.0 * detection.f1(detection.confident(outputs, options), ref),
            reference=lambda fp32: detection.confident(fp32, options),
        )
    def mean_ap(outputs: Outputs, labels: Any) -> float:
        value = both_maps(outputs, labels)[0 if kind == "map50_95" else 1]
        if value < 0:
            raise ValueError("the labels hold no boxes: mAP is undefined")
        return 100.0 * value

    return Metric(kind, mean_ap, details=details)


def _builtin(recipe: Recipe, name: str, labelled: bool) -> Metric:
    spec = recipe.validation
    pick = partial(_output, name=spec.output)
    if name in ("top1", "top5"):
        k = int(name[-1])
        return Metric(name, lambda outputs, labels: classification.top_k(pick(outputs), labels, k))
    if name in ("map50", "map50_95", "box_f1"):
        return _detection(spec, name)
    if name == "miou":
        options = spec.segmentation

        def masks(outputs: Outputs) -> np.ndarray:
            return segmentation.class_map(pick(outputs), options)

        return Metric(
            "miou",
            lambda outputs, labels: 100.0 * segmentation.mean_iou(masks(outputs), labels, options.ignore_index),
            reference=None if labelled else masks,
        )
    if name == "cer":
        blank = spec.text.blank
        alphabet = text.read_alphabet(recipe.resolve(spec.text.alphabet)) if spec.text.alphabet else None

        def decoded(outputs: Outputs) -> list[list[int]]:
            return text.greedy_decode(pick(outputs), blank)

        def error_rate(outputs: Outputs, labels: Any) -> float:
            references = text.reference_sequences(labels, alphabet, blank) if labelled else labels
            return 100.0 * text.cer(decoded(outputs), references)

        return Metric("cer", error_rate, higher_is_better=False, reference=None if labelled else decoded)

    def fidelity_details(outputs: Outputs, reference: Outputs) -> dict[str, float]:
        found = fidelity.per_output(reference, outputs)
        return {f"{out} {key}": value for out, numbers in found.items() for key, value in numbers.items() if key != "max_abs_diff"}

    return Metric(
        "fidelity",
        lambda outputs, reference: 100.0 * min(v["cosine"] for v in fidelity.per_output(reference, outputs).values()),
        reference=lambda fp32: fp32,
        details=fidelity_details,
    )


def load(recipe: Recipe, labels: Labels) -> Metric:
    """The metric the recipe's ``validation.metric`` names, for validation data with these ``labels``."""
    name = recipe.validation.metric
    where = f"{recipe.source}: validation.metric"
    labelled = labels is not None
    if name == "auto":
        name = "top1" if _is_class_labels(labels) else "fidelity"
    elif name == "detection":
        name = "map50_95" if labelled else "box_f1"
    path = metric_file(recipe)  # refuses code from outside the recipe folder
    if path is None:
        if name in ("top1", "top5", "map50", "map50_95") and not labelled:
            hint = "box_f1 compares boxes with FP32's" if name.startswith("map") else "fidelity compares outputs with FP32's"
            raise InputError(
                f"{where}: {name} needs labels (in the validation data, or validation.labels: an .npz or a COCO .json); {hint}"
            )
        return _builtin(recipe, name, labelled)
    if not labelled:
        raise InputError(f"{where}: {name} needs labels (in the validation data, or validation.labels)")
    return _custom(path, name, where)


def _custom(path: Path, spec: str, where: str) -> Metric:
    function_name = spec.rsplit(":", 1)[1]
    if not path.is_file():
        raise InputError(f"{where}: metric file {path} not found (expected a built-in name or 'file.py:function')")
    module_name = f"edgeq_metric_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise InputError(f"{where}: cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    try:
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 (a recipe's metric module may raise anything while it loads)
        sys.modules.pop(module_name, None)
        raise InputError(f"{where}: importing {path} failed with {exc.__class__.__name__}: {exc}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        found = sorted(n for n in vars(module) if callable(vars(module)[n]) and not n.startswith("_"))
        raise InputError(f"{where}: {path} has no function '{function_name}' (found: {', '.join(found) or 'none'})")
    return Metric(spec, function, path)
