"""Every network input fed from data, batch by batch, as ``{input name: array}``.

The recipe's first input comes from its :class:`~edgeq.data.Dataset` (images, or an .npz array named after
the input or ``x``), which also gives labels and the sample selection. Every other input comes from:

- the same .npz, an array named after the input: samples on axis 0 (``[N, *shape without the batch dim]``),
  or exactly the input's shape for a constant input that has no batch dim (a sample rate, say), fed whole;
- a folder with one sub-folder per input (the first input's holds its images or .npy files, each other
  one's holds one .npy file per sample, matched by sorted order);
- nothing, for recurrent state (``inputs[].state`` names the output fed back into it): it starts at zeros and
  takes FP32's output of the previous sample of its sequence (:meth:`Feeds.carry_state`), so every sample
  can then be run on its own, the same on the host and on the device.

An input's batch dim is where its shape names the first input's batch dim (``N``); an input without it is
constant. An output's batch dim is measured (:meth:`Feeds.output_axes`). In validation.npz every input is stored
with samples on axis 0 (constants whole, listed in ``constants``), with every input's and output's batch axis
(the convention is :mod:`edgeq.device.batches`'s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.data import Dataset
from edgeq.errors import InputError
from edgeq.recipe import DataSpec, InputSpec, Recipe

Feed = dict[str, np.ndarray]


def batch_axes(inputs: list[InputSpec]) -> dict[str, int | None]:
    """Each input's batch axis: where it names the first input's batch dim; None for a constant input."""
    batch = inputs[0].shape[0]
    axes: dict[str, int | None] = {inputs[0].name: 0}
    for spec in inputs[1:]:
        axes[spec.name] = next((i for i, dim in enumerate(spec.shape) if dim == batch and (isinstance(batch, str) or i == 0)), None)
    return axes


def _check_shape(where: str, name: str, array: np.ndarray, spec: InputSpec, axis: int | None) -> None:
    """A constant input's array has the input's shape; a batched one its samples first, then the other dims."""
    dims = list(spec.static_shape) if axis is None else [d for i, d in enumerate(spec.shape) if i != axis]
    got = list(array.shape) if axis is None else list(array.shape[1:])
    fixed = [isinstance(d, int) and d > 0 for d in (spec.shape if axis is None else dims)]
    if len(got) != len(dims) or any(f and g != d for f, g, d in zip(fixed, got, dims, strict=True)):
        expected = dims if axis is None else ["N", *dims]
        what = "the input's shape (a constant input)" if axis is None else "samples first"
        raise InputError(f"{where}: array '{name}' has shape {list(array.shape)}, expected {expected} ({what}) for input '{spec.name}'")
    if array.dtype != np.dtype(spec.dtype):
        raise InputError(f"{where}: array '{name}' has dtype {array.dtype}, expected {spec.dtype} for input '{spec.name}'")


@dataclass
class _Source:
    """One input other than the first: a per-sample array, per-sample files, or a constant."""

    spec: InputSpec
    axis: int | None
    array: np.ndarray | None = None  # per sample on axis 0, or the constant itself (axis None)
    files: list[Path] | None = None

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Samples ``indices`` with samples on axis 0 (the constant itself for a constant input)."""
        if self.array is not None:
            return self.array if self.axis is None else self.array[indices]
        assert self.files is not None, "a sample input holds its array or its files"
        return np.stack([np.load(self.files[int(i)], allow_pickle=False) for i in indices]).astype(self.spec.dtype, copy=False)


class Feeds:
    """All inputs of the recipe's model for one data set, read lazily in batches of ``{name: array}``."""

    def __init__(self, recipe: Recipe, spec: DataSpec, field: str) -> None:
        self.inputs = recipe.inputs
        self.axes = batch_axes(recipe.inputs)
        path = recipe.resolve(spec.path)
        where = f"{recipe.source}: {field}.path"
        first = recipe.inputs[0]
        others = recipe.inputs[1:]
        per_input = path.is_dir() and others and all((path / s.name).is_dir() for s in recipe.inputs)
        if per_input:
            self.dataset = Dataset.from_spec(recipe, spec.model_copy(update={"path": path / first.name}), field)
        else:
            self.dataset = Dataset.from_spec(recipe, spec, field)
        self.sources: dict[str, _Source] = {}
        self.state: dict[str, str] = {s.name: s.state for s in others if s.state}
        self._carried: dict[str, np.ndarray] = {}
        archive: dict[str, np.ndarray] | None = None
        if not per_input and path.suffix == ".npz" and others:
            with np.load(path, allow_pickle=False) as stored:
                present = sorted(stored.files)
                archive = {name: stored[name] for name in present if name in {s.name for s in others}}
        for other in others:
            axis = self.axes[other.name]
            if other.state and axis is None:
                raise InputError(f"{recipe.source}: inputs: state input '{other.name}' needs the batch dim in its shape")
            if per_input:
                files = sorted(p for p in (path / other.name).iterdir() if p.suffix == ".npy")
                if len(files) != self.dataset.total:
                    raise InputError(f"{where}: {path / other.name} holds {len(files)} .npy files for {self.dataset.total} samples of '{first.name}'")
                if axis is None:
                    raise InputError(f"{where}: input '{other.name}' has no batch dim; give it in an .npz instead of a folder")
                self.sources[other.name] = _Source(other, axis, files=files)
            elif archive is not None and other.name in archive:
                array = archive[other.name]
                _check_shape(str(path), other.name, array, other, axis)
                if axis is not None and len(array) != self.dataset.total:
                    raise InputError(f"{path}: array '{other.name}' holds {len(array)} samples, '{first.name}' {self.dataset.total}")
                self.sources[other.name] = _Source(other, axis, array=array)
            elif other.name not in self.state:
                found = f"arrays {present}" if archive is not None else f"{path} (not an .npz with named arrays or a folder per input)"
                raise InputError(
                    f"{where}: no data for input '{other.name}': give an array named '{other.name}' in the .npz, a folder per"
                    f" input, or mark it as recurrent state (inputs[].state: the output fed back into it); found {found}"
                )
        if self.state and spec.sequence_length is None:
            self.dataset.in_order()  # one sequence: a random subset would cut it

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self) -> np.ndarray | None:
        return self.dataset.labels

    def _place(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Samples-first ``rows`` moved to the input's batch axis."""
        axis = self.axes[name]
        return rows if axis in (None, 0) else np.moveaxis(rows, 0, axis)

    def batches(
        self, batch_size: int, decoders: Executor | None = None, ahead: int = 2, *, samples_first: bool = False
    ) -> Iterator[Feed]:
        """Every input for the selected samples, ``batch_size`` at a time, in order.

        ``decoders``, ``ahead``: as :meth:`edgeq.data.Dataset.batches` (images decoded ahead on a pool).
        ``samples_first``: every batched input with samples on axis 0 (as validation.npz stores them).
        """
        order = self.dataset.order
        start = 0
        for batch in self.dataset.batches(batch_size, decoders, ahead):
            picked = order[start : start + len(batch.x)]
            feed = {self.inputs[0].name: batch.x}
            for name, source in self.sources.items():
                rows = source.rows(picked)
                feed[name] = rows if samples_first else self._place(name, rows)
            for name in self.state:
                rows = self._carried[name][start : start + len(batch.x)] if name in self._carried else self._zeros(name, len(batch.x))
                feed[name] = rows if samples_first else self._place(name, rows)
            start += len(batch.x)
            yield feed

    def _zeros(self, name: str, count: int) -> np.ndarray:
        spec = next(s for s in self.inputs if s.name == name)
        axis = self.axes[name]
        rest = [d for i, d in enumerate(spec.static_shape) if i != axis]
        return np.zeros((count, *rest), spec.dtype)

    def carry_state(self, run: Callable[[Feed], dict[str, np.ndarray]], sequence_length: int | None) -> None:
        """Fill each state input with FP32's fed-back output of the previous sample (zeros at each sequence start).

        ``run`` maps one feed to the model's outputs by name. Samples run one at a time, in order.
        """
        if not self.state:
            return
        total = len(self)
        length = sequence_length or total
        carried = {name: self._zeros(name, total) for name in self.state}
        for index, feed in enumerate(self.batches(1)):
            if index % length:
                for name in self.state:
                    feed[name] = self._place(name, carried[name][index : index + 1])
            outputs = run(feed)
            if (index + 1) % length and index + 1 < total:
                for name, output in self.state.items():
                    if output not in outputs:
                        raise InputError(f"inputs[].state: input '{name}' names output '{output}', which the model does not have")
                    back = outputs[output]
                    axis = self.axes[name]
                    carried[name][index + 1] = back if axis is None else np.moveaxis(back, axis, 0)[0]
        self._carried = carried

    def output_axes(self, run: Callable[[Feed], dict[str, np.ndarray]]) -> dict[str, int | None]:
        """Each output's batch axis: the one axis that doubles when ``run`` (one feed -> the model's outputs by name)
        is given the first sample twice instead of once; None for an output that stays the same; 0 (each output's
        samples first, as before) for one that changes otherwise."""
        one = next(self.batches(1))
        two = {name: a if self.axes[name] is None else np.concatenate([a, a], axis=self.axes[name]) for name, a in one.items()}
        single, double = run(one), run(two)
        axes: dict[str, int | None] = {}
        for name, small in single.items():
            large = double[name].shape
            grown = [i for i, (a, b) in enumerate(zip(small.shape, large, strict=True)) if a != b] if small.ndim == len(large) else None
            if grown == []:
                axes[name] = None
            elif grown is not None and len(grown) == 1 and large[grown[0]] == 2 * small.shape[grown[0]]:
                axes[name] = grown[0]
            else:
                axes[name] = 0
        return axes

    def constants(self) -> list[str]:
        """Inputs fed whole (no batch dim)."""
        return [name for name, axis in self.axes.items() if axis is None]
