"""Inputs from .npz files and running them through a session batch by batch."""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import progress
from .backend import Session, TensorSpec
from .errors import AgentError


def load_npz(path: str) -> Dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise AgentError(AgentError.INVALID_INPUT, f"cannot read {path} as .npz: {exc}") from exc


def pick_inputs(arrays: Dict[str, np.ndarray], specs: List[TensorSpec]) -> Dict[str, np.ndarray]:
    """Each input's array under its name, or under ``x`` for a single-input model, samples on axis 0, all
    equally long; inputs named in ``constants`` (no batch dim) are taken whole."""
    constants = {str(c) for c in arrays.get("constants", ())}
    picked = {}
    for spec in specs:
        key = spec.name if spec.name in arrays else ("x" if len(specs) == 1 and "x" in arrays else None)
        if key is None:
            raise AgentError(AgentError.INVALID_INPUT, f"the .npz has no array {spec.name!r} (nor 'x'); it has {sorted(arrays)}")
        picked[spec.name] = np.asarray(arrays[key]).astype(spec.dtype, copy=False)
    lengths = {len(a) for name, a in picked.items() if name not in constants}
    if len(lengths) != 1 or 0 in lengths:
        raise AgentError(AgentError.INVALID_INPUT, "input arrays must be non-empty and equally long")
    return {name: _Constant(a) if name in constants else a for name, a in picked.items()}


class _Constant(np.ndarray):
    """An input fed whole to every batch (it has no batch dim)."""

    def __new__(cls, array: np.ndarray) -> _Constant:
        return np.asarray(array).view(cls)


def _batch_axis(spec: TensorSpec) -> int:
    """Where samples go in an input: its first dynamic dim, else the first dim."""
    return next((i for i, d in enumerate(spec.shape) if d is None), 0)


def batch_size(specs: List[TensorSpec], requested: Optional[int]) -> int:
    """The requested batch, or the model's fixed batch dimension, or 32; refuses a batch the model cannot take."""
    fixed = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int)}
    if requested is not None and requested < 1:
        raise AgentError(AgentError.INVALID_INPUT, "--batch must be >= 1")
    if fixed and requested is not None and fixed != {requested}:
        raise AgentError(AgentError.INVALID_INPUT, f"the model's batch dimension is fixed at {sorted(fixed)}")
    return requested or (fixed.pop() if len(fixed) == 1 else 32)


def sample_count(inputs: Dict[str, np.ndarray]) -> int:
    """How many samples ``inputs`` (from :func:`pick_inputs`) hold."""
    return len(next(a for a in inputs.values() if not isinstance(a, _Constant)))


def run_all(session: Session, inputs: Dict[str, np.ndarray], batch: int) -> Tuple[Dict[str, np.ndarray], float]:
    """Every output over all samples, by name (the last batch zero-padded to ``batch``), and the seconds it took."""
    total = sample_count(inputs)
    outputs = []  # type: List[List[np.ndarray]]
    start = time.perf_counter()
    for begin in range(0, total, batch):
        feeds = {}
        for spec in session.inputs:
            array = inputs[spec.name]
            if isinstance(array, _Constant):
                feeds[spec.name] = np.asarray(array)
                continue
            chunk = array[begin:begin + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            feeds[spec.name] = np.moveaxis(chunk, 0, _batch_axis(spec))
        try:
            result = session.run(feeds)
        except Exception as exc:
            raise AgentError(AgentError.RUN_FAILED, f"inference failed: {exc}") from exc
        outputs.append([np.asarray(r)[: min(batch, total - begin)] for r in result])
        progress.advance(min(batch, total - begin))
    seconds = time.perf_counter() - start
    return {name: np.concatenate([o[i] for o in outputs]) for i, name in enumerate(session.outputs)}, seconds


def first(outputs: Dict[str, np.ndarray]) -> np.ndarray:
    """The first output (the one compared when a single array stands for the model's answer)."""
    return next(iter(outputs.values()))
