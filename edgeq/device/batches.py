"""Inputs from .npz files and running them through a session batch by batch.

The data the host ships (validation.npz, smoke.npz) stores every batched input with its samples on axis 0
(``[N, *the input's other dims]``) and every input without a batch dim whole, and carries:

- ``constants``: the names of the inputs stored whole (str);
- ``batch_axes.names`` (str) and ``batch_axes.axes`` (int64), side by side: the axis that holds the samples in
  every model input and output as the model takes or gives it (``-1``: none, an input fed whole or an output not
  per sample). Inputs are moved to their axis, the batch size is read from the batched inputs' axes, and each
  output is cut and joined along its own axis (``state [2, N, 128] -> stateN [2, N, 128]`` on axis 1).

Data written before ``batch_axes`` existed is run as it was then: each input's samples on its first dynamic dim
(else axis 0), the batch from dim 0 of every input, every output cut on axis 0.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from . import progress
from .backend import Session, TensorSpec
from .errors import AgentError

CONSTANTS = "constants"
AXIS_NAMES = "batch_axes.names"
AXIS_VALUES = "batch_axes.axes"
NO_AXIS = -1
Axes = Dict[str, int]  # tensor name -> the axis of its samples (NO_AXIS: none)


def load_npz(path: str) -> Dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise AgentError(AgentError.INVALID_INPUT, f"cannot read {path} as .npz: {exc}") from exc


def axes_columns(axes: Dict[str, Optional[int]]) -> Dict[str, np.ndarray]:
    """The arrays that carry ``axes`` (None: no batch axis) in the data (the inverse of :func:`stored_axes`)."""
    return {AXIS_NAMES: np.array(list(axes), dtype=np.str_),
            AXIS_VALUES: np.array([NO_AXIS if a is None else a for a in axes.values()], dtype=np.int64)}


def stored_axes(arrays: Dict[str, np.ndarray]) -> Optional[Axes]:
    """Every input's and output's batch axis from the data, or None for data written before they were stored."""
    if AXIS_NAMES not in arrays and AXIS_VALUES not in arrays:
        return None
    names, values = np.asarray(arrays.get(AXIS_NAMES, ())), np.asarray(arrays.get(AXIS_VALUES, ()))
    if names.ndim != 1 or values.shape != names.shape or values.dtype.kind not in "iu" or (values < NO_AXIS).any():
        raise AgentError(AgentError.INVALID_INPUT, f"'{AXIS_NAMES}' and '{AXIS_VALUES}' must be equally long 1-D arrays of"
                                                   f" names and axes >= {NO_AXIS}; found shapes {names.shape} and {values.shape}")
    return {str(name): int(axis) for name, axis in zip(names, values)}


def _axis(axes: Axes, name: str, what: str) -> int:
    if name not in axes:
        raise AgentError(AgentError.INVALID_INPUT, f"'{AXIS_NAMES}' does not name the model's {what} {name!r}; it names {sorted(axes)}")
    return axes[name]


def pick_inputs(arrays: Dict[str, np.ndarray], specs: List[TensorSpec]) -> Dict[str, np.ndarray]:
    """Each input's array under its name, or under ``x`` for a single-input model, samples on axis 0, all
    equally long; inputs without a batch axis (or, in older data, named in ``constants``) are taken whole."""
    axes = stored_axes(arrays)
    if axes is None:
        constants = {str(c) for c in arrays.get(CONSTANTS, ())}
    else:
        constants = {s.name for s in specs if _axis(axes, s.name, "input") == NO_AXIS}
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


def _batch_axis(spec: TensorSpec, axes: Optional[Axes]) -> int:
    """Where samples go in an input: its stored axis, else (older data) its first dynamic dim, else the first dim."""
    if axes is not None:
        return _axis(axes, spec.name, "input")
    return next((i for i, d in enumerate(spec.shape) if d is None), 0)


def batch_size(specs: List[TensorSpec], requested: Optional[int], axes: Optional[Axes] = None) -> int:
    """The requested batch, or the model's fixed batch dimension, or 32; refuses a batch the model cannot take.

    ``axes`` (:func:`stored_axes`): the batch is read on the batched inputs' axes; without them, on every input's dim 0.
    """
    at = [(s, 0 if axes is None else _axis(axes, s.name, "input")) for s in specs]
    fixed = {d for d in (s.shape[a] for s, a in at if a != NO_AXIS and a < len(s.shape)) if isinstance(d, int)}
    if requested is not None and requested < 1:
        raise AgentError(AgentError.INVALID_INPUT, "--batch must be >= 1")
    if fixed and requested is not None and fixed != {requested}:
        raise AgentError(AgentError.INVALID_INPUT, f"the model's batch dimension is fixed at {sorted(fixed)}")
    return requested or (fixed.pop() if len(fixed) == 1 else 32)


def sample_count(inputs: Dict[str, np.ndarray]) -> int:
    """How many samples ``inputs`` (from :func:`pick_inputs`) hold."""
    return len(next(a for a in inputs.values() if not isinstance(a, _Constant)))


def run_all(
    session: Session, inputs: Dict[str, np.ndarray], batch: int, axes: Optional[Axes] = None
) -> Tuple[Dict[str, np.ndarray], float]:
    """Every output over all samples, by name, and the seconds it took (:func:`run_batched`).

    ``axes`` (:func:`stored_axes`): each input is fed, and each output joined, on its axis (an output without one
    is kept from the first batch); without them, inputs as :func:`_batch_axis` says and outputs on axis 0.
    """
    placed = {}  # every input at its batch axis, as the model takes it (a view: samples-first data moved there)
    in_axes = {}
    for spec in session.inputs:
        array = inputs[spec.name]
        if isinstance(array, _Constant):
            placed[spec.name], in_axes[spec.name] = np.asarray(array), NO_AXIS
        else:
            axis = _batch_axis(spec, axes)
            placed[spec.name], in_axes[spec.name] = np.moveaxis(array, 0, axis), axis
    out_axes = [0 if axes is None else _axis(axes, name, "output") for name in session.outputs]

    def run(feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        try:
            return [np.asarray(r) for r in session.run(feeds)]
        except Exception as exc:
            raise AgentError(AgentError.RUN_FAILED, f"inference failed: {exc}") from exc

    start = time.perf_counter()
    joined = run_batched(run, placed, in_axes, out_axes, batch, progress.advance)
    return dict(zip(session.outputs, joined)), time.perf_counter() - start


def run_batched(
    run: Callable[[Dict[str, np.ndarray]], List[np.ndarray]],
    inputs: Dict[str, np.ndarray],
    in_axes: Dict[str, int],
    out_axes: List[int],
    batch: int,
    advance: Callable[[int], None] = lambda n: None,
) -> List[np.ndarray]:
    """``run`` over all samples of ``inputs``, ``batch`` at a time: the one way host and device slice a model's data.

    Each input holds its samples on its ``in_axes`` axis (NO_AXIS: fed whole to every batch); the last batch is
    zero-padded to ``batch``. Each output is cut to the samples it was given and joined on its ``out_axes`` axis
    (NO_AXIS: kept from the first batch).
    """
    total = next(a.shape[in_axes[name]] for name, a in inputs.items() if in_axes[name] != NO_AXIS)
    parts = []  # type: List[List[np.ndarray]]
    for begin in range(0, total, batch):
        kept = min(batch, total - begin)
        feeds = {}
        for name, array in inputs.items():
            axis = in_axes[name]
            if axis == NO_AXIS:
                feeds[name] = array
                continue
            chunk = array[(slice(None),) * axis + (slice(begin, begin + kept),)]
            if kept < batch:
                pad = [(0, batch - kept if i == axis else 0) for i in range(chunk.ndim)]
                chunk = np.pad(chunk, pad)
            feeds[name] = chunk
        parts.append([first_samples(output, axis, kept) for output, axis in zip(run(feeds), out_axes)])
        advance(kept)
    return [join_batches([p[i] for p in parts], axis) for i, axis in enumerate(out_axes)]


def join_batches(parts: List[np.ndarray], axis: int) -> np.ndarray:
    """One output's batches joined along its batch ``axis``; an output without one (NO_AXIS) is the first batch's."""
    return parts[0] if axis == NO_AXIS else np.concatenate(parts, axis=axis)


def first_samples(output: np.ndarray, axis: int, kept: int) -> np.ndarray:
    """The first ``kept`` samples of an output, along its batch ``axis`` (all of it when it has none, NO_AXIS)."""
    if axis == NO_AXIS:
        return output
    if axis >= output.ndim:
        raise AgentError(AgentError.RUN_FAILED, f"an output of shape {list(output.shape)} has no batch axis {axis}")
    return output[(slice(None),) * axis + (slice(0, kept),)]


def first(outputs: Dict[str, np.ndarray]) -> np.ndarray:
    """The first output (the one compared when a single array stands for the model's answer)."""
    return next(iter(outputs.values()))
