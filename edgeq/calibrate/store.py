"""The calibration store: what calibration learns from the model and the calibration data alone, made once and
reused by every target and command.

The prepared FP32 model, every tensor's statistics (extremes and the |x| histogram) and the ranges a method
picks from them depend on the model, the calibration data, the preprocessing and the sampling, never on the
target: only placement and packaging (the Q/DQ model, the cache, the prediction) do. One entry per
:func:`edgeq.calibrate.manifest.statistics_key`, in ``<recipe folder>/edgeq-out/<recipe name>/.store/<key>/``:

- ``prepared.onnx``: the prepared model; ``statistics.npz``: the statistics, exactly (int64 histograms,
  float64 extremes), so ranges computed from them are the same bit for bit;
- ``entry.json``: what preparation did, the tensors, the passes that measured them, and each file's sha256;
- ``ranges-<method>-<percentile>.json``: one method's ranges, added the first time that method is asked for;

The FP32 side of validation (:class:`Validated`) depends on the prepared model and the validation data alone,
so it is kept apart from the entries, in ``validation/<key>/`` (:func:`edgeq.calibrate.manifest.reference_key`),
added the first time a validation set is run: later targets, methods and sample counts run only their INT8
model over it.

An entry or a validation set appears whole (made in a staging folder, then renamed into place) or not at all;
one whose files no longer match their hashes is ignored and made again. The :data:`KEEP` most recently used
entries stay, and as many validation sets.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from edgeq import atomic
from edgeq.calibrate.exposure import ExposurePlan
from edgeq.calibrate.prepare import PreparedModel
from edgeq.calibrate.ranges import TensorRange
from edgeq.calibrate.report import PreparationStep
from edgeq.calibrate.stats import TensorStats
from edgeq.device.hashing import sha256_file
from edgeq.npz import npz_bytes

KEEP = 8  # entries kept per recipe: the most recently used
STALE_STAGE = 3600.0  # s: a staging folder this old was left by a crashed run
ENTRY = "entry.json"
MODEL = "prepared.onnx"
STATISTICS = "statistics.npz"
VALIDATIONS, VALIDATION_NPZ, REFERENCE, VALIDATION_META = "validation", "validation.npz", "reference.npz", "validation.json"


@dataclass
class Measured:
    """One statistics run: the prepared model, the tensors that get a range, their statistics, how it went."""

    prepared: PreparedModel
    tensors: list[str]
    stats: dict[str, TensorStats]
    passes: ExposurePlan
    seconds: dict[str, float]  # prepare and statistics, as measured when the entry was made


@dataclass
class Validated:
    """The FP32 side of validation: each output over the validation data, validation.npz, and how they were run."""

    reference: dict[str, np.ndarray]
    npz: Path  # validation.npz in the store: copied out, never moved
    rows: int  # samples per batch
    output_axes: dict[str, int | None]  # each output's batch axis


def _stats_arrays(stats: dict[str, TensorStats]) -> dict[str, np.ndarray]:
    values = list(stats.values())
    return {
        "names": np.array([s.name for s in values], dtype=np.str_),
        "min": np.array([s.min for s in values], dtype=np.float64),
        "max": np.array([s.max for s in values], dtype=np.float64),
        "count": np.array([s.count for s in values], dtype=np.int64),
        "hist_range": np.array([s.hist_range for s in values], dtype=np.float64),
        "hist": np.stack([s.hist for s in values]) if values else np.zeros((0, 0), np.int64),
    }


def _stats_from(path: Path) -> dict[str, TensorStats]:
    with np.load(path, allow_pickle=False) as data:
        names, low, high, count, ranges, hist = (data[k] for k in ("names", "min", "max", "count", "hist_range", "hist"))
    return {
        str(name): TensorStats(str(name), float(low[i]), float(high[i]), int(count[i]), hist[i].copy(), float(ranges[i]))
        for i, name in enumerate(names)
    }


class Store:
    """One recipe's store (``folder``), at the entry ``key``."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self.key = key
        self.entry = folder / key

    def load(self) -> Measured | None:
        """The entry, or None when there is none or it is not intact (then it is made again)."""
        try:
            meta = json.loads((self.entry / ENTRY).read_text())
            for name, digest in meta["files"].items():
                if sha256_file(self.entry / name) != digest:
                    return None
            model = onnx.load_model_from_string((self.entry / MODEL).read_bytes())
            stats = _stats_from(self.entry / STATISTICS)
            prepared = PreparedModel(model, meta["notes"], meta["unquantizable"],
                                     [PreparationStep.model_validate(step) for step in meta["steps"]], meta["state"])
            measured = Measured(prepared, meta["tensors"], stats, ExposurePlan(**meta["passes"]), meta["seconds"])
        except (OSError, ValueError, KeyError, TypeError, DecodeError):  # pydantic's ValidationError is a ValueError
            return None
        os.utime(self.entry / ENTRY)  # recently used: kept by the pruning
        return measured

    def save(self, measured: Measured) -> None:
        """Write the entry: staged, then renamed into place whole; older entries beyond :data:`KEEP` go."""
        self.folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{self.key[:16]}.", suffix=".stage", dir=self.folder))
        try:
            (stage / MODEL).write_bytes(measured.prepared.model.SerializeToString())
            (stage / STATISTICS).write_bytes(npz_bytes(_stats_arrays(measured.stats)))
            prepared = measured.prepared
            meta: dict[str, Any] = {
                "key": self.key,
                "files": {name: sha256_file(stage / name) for name in (MODEL, STATISTICS)},
                "tensors": measured.tensors,
                "notes": prepared.notes,
                "unquantizable": prepared.unquantizable,
                "steps": [step.model_dump(mode="json") for step in prepared.steps],
                "state": prepared.state,
                "passes": asdict(measured.passes),
                "seconds": measured.seconds,
            }
            (stage / ENTRY).write_text(json.dumps(meta, indent=1) + "\n")
            shutil.rmtree(self.entry, ignore_errors=True)  # an entry that did not load: not intact
            with contextlib.suppress(OSError):  # another run stored the same entry meanwhile: the same content
                os.rename(stage, self.entry)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        _prune(self.folder, ENTRY)  # the entries beyond the KEEP most recently used go

    def _ranges_path(self, method: str, percentile: float) -> Path:
        return self.entry / f"ranges-{method}-{percentile!r}.json"

    def ranges(self, method: str, percentile: float) -> dict[str, TensorRange] | None:
        """The ranges ``method`` gave before for this entry, or None."""
        try:
            data = json.loads(self._ranges_path(method, percentile).read_text())
            return {item["name"]: TensorRange(**item) for item in data}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_ranges(self, method: str, percentile: float, ranges: dict[str, TensorRange]) -> None:
        """Keep ``method``'s ranges beside the statistics they came from (when the entry exists)."""
        if (self.entry / ENTRY).is_file():
            atomic.write_json(self._ranges_path(method, percentile), [asdict(r) for r in ranges.values()])

    @property
    def _validations(self) -> Path:
        return self.folder / VALIDATIONS

    def validation(self, key: str) -> Validated | None:
        """The FP32 side of validation stored for reference key ``key``, or None (none, or not intact)."""
        folder = self._validations / key[:32]
        try:
            meta = json.loads((folder / VALIDATION_META).read_text())
            if meta["key"] != key or any(sha256_file(folder / name) != digest for name, digest in meta["files"].items()):
                return None
            with np.load(folder / REFERENCE, allow_pickle=False) as data:
                reference = {name: data[str(i)] for i, name in enumerate(meta["outputs"])}
            axes = {name: None if axis is None else int(axis) for name, axis in meta["output_axes"].items()}
            os.utime(folder / VALIDATION_META)  # recently used: kept by the pruning
            return Validated(reference, folder / VALIDATION_NPZ, int(meta["rows"]), axes)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_validation(self, key: str, validated: Validated) -> None:
        """Keep the FP32 side of validation for reference key ``key``, whole or not at all; the sets beyond
        :data:`KEEP` most recently used go."""
        self._validations.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", suffix=".stage", dir=self._validations))
        try:
            shutil.copyfile(validated.npz, stage / VALIDATION_NPZ)
            names = list(validated.reference)
            (stage / REFERENCE).write_bytes(npz_bytes({str(i): validated.reference[n] for i, n in enumerate(names)}))
            meta = {"key": key, "outputs": names, "rows": validated.rows, "output_axes": validated.output_axes,
                    "files": {name: sha256_file(stage / name) for name in (VALIDATION_NPZ, REFERENCE)}}
            (stage / VALIDATION_META).write_text(json.dumps(meta, indent=1) + "\n")
            folder = self._validations / key[:32]
            shutil.rmtree(folder, ignore_errors=True)  # one that did not load: not intact
            with contextlib.suppress(OSError):  # another run stored the same meanwhile: the same content
                os.rename(stage, folder)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        _prune(self._validations, VALIDATION_META)


def _prune(folder: Path, marker: str) -> None:
    """In ``folder``, remove the sets (sub-folders holding ``marker``) beyond the :data:`KEEP` whose marker was used
    most recently, and the stages crashed runs left."""
    now = time.time()
    made, stale = [], []
    for item in folder.iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile: another run pruned it
            if item.name.endswith(".stage"):
                if now - item.stat().st_mtime > STALE_STAGE:
                    stale.append(item)
            elif (item / marker).is_file():
                made.append(((item / marker).stat().st_mtime, item))
    made.sort(reverse=True)
    for item in stale + [path for _, path in made[KEEP:]]:
        shutil.rmtree(item, ignore_errors=True)
