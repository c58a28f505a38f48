"""The recipe's validation metric: ``top1`` built in, or ``file.py:function`` from the recipe's folder.

A metric receives (scores [N, ...], labels [N]) and returns a number in percent.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.errors import InputError
from edgeq.recipe import Recipe, metric_file


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose highest score is the row's label, in percent."""
    scores = np.asarray(scores).reshape(len(scores), -1)
    labels = np.asarray(labels).reshape(-1)
    return float(100.0 * np.mean(scores.argmax(axis=1) == labels)) if len(labels) else float("nan")


@dataclass(frozen=True)
class Metric:
    """A named metric function; ``path`` is the user file it came from (None for built-ins)."""

    name: str
    function: Callable[[np.ndarray, np.ndarray], float]
    path: Path | None = None

    def __call__(self, scores: np.ndarray, labels: np.ndarray) -> float:
        try:
            value = self.function(scores, labels)
        except Exception as exc:  # noqa: BLE001 (a recipe's metric function may raise anything)
            raise InputError(f"validation.metric {self.name} raised {exc.__class__.__name__}: {exc}") from None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"validation.metric {self.name} must return a number in percent, returned {value!r}") from None
        if not math.isfinite(number):
            raise InputError(f"validation.metric {self.name} returned {number}, expected a finite number in percent")
        return number


def load(recipe: Recipe) -> Metric:
    """The metric the recipe's ``validation.metric`` names."""
    spec = recipe.validation.metric
    path = metric_file(recipe)  # refuses code from outside the recipe folder
    if path is None:
        return Metric("top1", top1)
    function_name = spec.rsplit(":", 1)[1]
    where = f"{recipe.source}: validation.metric"
    if not path.is_file():
        raise InputError(f"{where}: metric file {path} not found (expected 'top1' or 'file.py:function')")
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
