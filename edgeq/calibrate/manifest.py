"""The keys of a calibration (hashes of model, data and settings: its statistics, and its artifacts for a target)
and the artifact manifest."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import edgeq
from edgeq.device.hashing import sha256_file
from edgeq.recipe import Recipe
from edgeq.targets import Target

KEY_SCHEMA = 4  # bump when the artifacts' content changes for the same inputs (3: CPU-independent statistics; 4: predictions)


def _tree_sha256(path: Path) -> str:
    """Hash of a file, or of every file under a folder (relative names and contents)."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(os.fsencode(item.relative_to(path)) + b"\0" + sha256_file(item).encode())
    return digest.hexdigest()


def statistics_key(recipe: Recipe, bins: int) -> str:
    """sha256 over what the prepared model, the statistics and a method's ranges depend on: the model bytes, the
    calibration data, the inputs, preprocessing, classes and sampling (not the target, the method or the fit)."""
    parts = {
        "schema": KEY_SCHEMA,
        "edgeq": edgeq.__version__,
        "model": sha256_file(recipe.model_path),
        "calibration_data": _tree_sha256(recipe.resolve(recipe.calibration.path)),
        "recipe": recipe.model_dump(mode="json", include={"inputs", "preprocess", "classes"}),
        "sampling": recipe.calibration.model_dump(mode="json", exclude={"method", "percentile", "fit_budget"}),
        "bins": bins,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def validation_key(recipe: Recipe) -> str:
    """sha256 over what validation reads besides the model: the validation data, labels and alphabet files and
    the validation section."""
    files = [recipe.validation.labels, recipe.validation.text.alphabet]
    parts = {
        "schema": KEY_SCHEMA,
        "edgeq": edgeq.__version__,
        "validation_data": _tree_sha256(recipe.resolve(recipe.validation.path)),
        "files": [sha256_file(recipe.resolve(f)) if f else None for f in files],
        "validation": recipe.validation.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def reference_key(validation: str, model: bytes) -> str:
    """sha256 over what the FP32 side of validation (its reference outputs and validation.npz) depends on: the
    validation key and the prepared model it runs, whatever calibration data and sampling prepared it."""
    return hashlib.sha256(f"{validation}:{hashlib.sha256(model).hexdigest()}".encode()).hexdigest()


def cache_key(recipe: Recipe, target: Target, settings: dict[str, Any], statistics: str, validation: str) -> str:
    """sha256 over the statistics and validation keys, the metric file, settings and target."""
    metric = recipe.validation.custom_metric
    parts = {
        "schema": KEY_SCHEMA,
        "edgeq": edgeq.__version__,
        "statistics": statistics,
        "validation": validation,
        "metric_file": sha256_file(recipe.resolve(metric)) if metric else None,
        "recipe": recipe.model_dump(mode="json", include={"calibration", "budget"},
                                    exclude={"calibration": {"fit_budget"}}),  # the fit in force is in ``settings``
        "settings": settings,
        "target": {"name": target.name, "tensorrt": target.tensorrt, "backend": target.backend},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def manifest(key: str, target: Target, files: list[Path], header: int | None) -> dict[str, Any]:
    """The manifest of written artifacts: key, target, TensorRT version and each file's sha256 and size."""
    return {
        "key": key,
        "edgeq": edgeq.__version__,
        "target": target.name,
        "tensorrt": target.tensorrt,
        "tensorrt_header_version": header,
        "artifacts": [{"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size} for p in files],
    }


def is_current(folder: Path, key: str) -> bool:
    """Whether ``folder`` holds a complete, unmodified calibration for ``key``."""
    path = folder / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("key") != key:
        return False
    for entry in data.get("artifacts", []):
        item = folder / entry["name"]
        if not item.is_file() or item.stat().st_size != entry["size"] or sha256_file(item) != entry["sha256"]:
            return False
    return bool(data.get("artifacts"))
