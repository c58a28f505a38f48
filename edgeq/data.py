"""Data sets for calibration and validation: image folders (one sub-folder per class) or .npz files.

Samples are read lazily, batch by batch, so that memory never grows with the sample count. Given a
pool of threads, images are decoded a few batches ahead of the consumer (PIL and numpy release the
GIL for most of the work); the batches and their values are the same either way.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgeq.errors import InputError
from edgeq.recipe import DataSpec, DimRange, InputSpec, Preprocess, Recipe

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
MAX_PIXELS = 64_000_000  # per image: 8000 x 8000; larger ones are refused before they are decoded


@dataclass(frozen=True)
class Batch:
    """One batch: the network input and, where known, the class labels."""

    x: np.ndarray
    labels: np.ndarray | None


def natural_key(name: str) -> tuple:
    """Sort key that reads digit runs as numbers: '2' < '10', '90' < '180'."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part)


def fitted(image, size: tuple[int, int], spec: Preprocess):  # PIL images in and out
    """``image`` brought to (height, width) ``size`` as ``spec.fit`` says (stretch, letterbox or center_crop)."""
    from PIL import Image

    height, width = size
    if spec.fit == "stretch":
        return image.resize((width, height), Image.Resampling.BILINEAR)
    ratio = (min if spec.fit == "letterbox" else max)(width / image.width, height / image.height)
    scaled = image.resize((max(1, round(image.width * ratio)), max(1, round(image.height * ratio))), Image.Resampling.BILINEAR)
    if spec.fit == "center_crop":
        left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
        return scaled.crop((left, top, left + width, top + height))
    pad = round(spec.pad_value)
    canvas = Image.new(image.mode, (width, height), pad if image.mode == "L" else (pad, pad, pad))
    offset = (0, 0) if spec.pad_position == "top_left" else ((width - scaled.width) // 2, (height - scaled.height) // 2)
    canvas.paste(scaled, offset)
    return canvas


def _check_name(path: Path) -> None:
    """File and class names become labels and report entries: they must be text (UTF-8)."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{path}: the name is not valid UTF-8; rename it") from None


def _open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file: a FIFO or device named like an image is refused, not read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not block
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: not a regular file (a FIFO, device or socket named like an image)")
    return os.fdopen(fd, "rb")


def preprocess_image(path: Path, spec: Preprocess, layout: str = "NCHW", out: np.ndarray | None = None) -> np.ndarray:
    """Load one image file and turn it into a float32 sample (C,H,W or H,W,C) as the recipe says.

    ``out``: a float32 array to write the sample into (a batch's slot), used when the sample has its shape;
    otherwise a new array is returned (the caller says what is wrong with its shape)."""
    from PIL import Image

    # edgeq's own cap below is stricter than Pillow's, whose warning would only repeat it
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    too_big = f"{path}: an image of more than {MAX_PIXELS:,} pixels; edgeq does not decode it"
    try:
        with _open_regular(path) as handle, Image.open(handle) as image:
            if image.width * image.height > MAX_PIXELS:
                raise InputError(f"{too_big} ({image.width}x{image.height})")
            image = image.convert("L" if spec.channel_order == "GRAY" else "RGB")
            if spec.resize is not None:
                image = fitted(image, spec.resize, spec)
            pixels = np.asarray(image)  # uint8: the float32 product below converts it exactly
    except Image.DecompressionBombError:
        raise InputError(too_big) from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    height, width, channels = pixels.shape
    mean = np.asarray(spec.mean[:channels] if len(spec.mean) >= channels else spec.mean * channels, np.float32)
    std = np.asarray(spec.std[:channels] if len(spec.std) >= channels else spec.std * channels, np.float32)
    # (x * scale - mean) / std in float32, one channel plane at a time: numpy broadcasting a per-channel
    # vector over the last axis runs its inner loop 3 values at a time (about 4x slower); same values either way
    shape = (channels, height, width) if layout == "NCHW" else (height, width, channels)
    sample = out if out is not None and out.shape == shape and out.dtype == np.float32 else np.empty(shape, np.float32)
    for c in range(channels):
        plane = sample[c] if layout == "NCHW" else sample[:, :, c]
        np.multiply(pixels[:, :, c], np.float32(spec.scale), out=plane, dtype=np.float32)
        np.subtract(plane, mean[c], out=plane)
        np.divide(plane, std[c], out=plane)
    return sample


def _expected(spec: InputSpec) -> list[int | str]:
    """One sample's dims as data must give them: a ranged dim at its opt."""
    return [dim.opt if isinstance(dim, DimRange) else dim for dim in spec.shape[1:]]


def _at_opt(preprocess: Preprocess, spec: InputSpec) -> Preprocess:
    """Without a resize, images are resized to the opt height and width of a ranged image input."""
    if preprocess.resize is not None or spec.profile is None or spec.layout not in ("NCHW", "NHWC") or len(spec.shape) != 4:
        return preprocess
    height, width = (2, 3) if spec.layout == "NCHW" else (1, 2)
    opt = spec.static_shape
    return preprocess.model_copy(update={"resize": (opt[height], opt[width])})


class Dataset:
    """A labelled (or unlabelled) set of samples for one network input, read lazily in batches."""

    def __init__(self, source: Path, input_spec: InputSpec, preprocess: Preprocess, classes: Sequence[str] | None = None) -> None:
        self.source = source
        self.declared_classes = list(classes) if classes else None
        self.input = input_spec
        self.preprocess = preprocess
        self.classes: list[str] = []
        self._files: list[Path] = []
        self._array: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._samples: int | None = None
        self._like: tuple[tuple[int, ...], np.dtype] | None = None  # shape and dtype of one decoded sample

    @classmethod
    def from_spec(cls, recipe: Recipe, spec: DataSpec, field: str) -> Dataset:
        """Open the data set a recipe's ``field`` (``calibration`` or ``validation``) names."""
        path = recipe.resolve(spec.path)
        dataset = cls(path, recipe.inputs[0], _at_opt(recipe.preprocess, recipe.inputs[0]), recipe.classes)
        if path.is_dir():
            dataset._scan_folder(field)
        elif path.suffix == ".npz" and path.is_file():
            dataset._open_npz(field)
        elif not path.exists():
            raise InputError(f"{recipe.source}: {field}.path: {path} does not exist")
        else:
            raise InputError(f"{recipe.source}: {field}.path: expected a folder of class folders or an .npz file, found {path}")
        dataset._select(spec.samples, spec.seed, spec.sequence_length)
        dataset._samples = spec.samples
        return dataset

    def _scan_folder(self, field: str) -> None:
        found = sorted((p.name for p in self.source.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)
        if not found:  # a flat folder of images or .npy samples: unlabelled (labels may come from validation.labels)
            self._files = sorted(p for p in self.source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | {".npy"})
            if not self._files:
                raise InputError(
                    f"{self.source}: {field} folder has neither class sub-folders nor images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            return
        classes = found
        if self.declared_classes is not None:
            missing = [c for c in self.declared_classes if c not in found]
            extra = [c for c in found if c not in self.declared_classes]
            if missing or extra:
                raise InputError(
                    f"{self.source}: {field} class folders {found} do not match the recipe's classes {self.declared_classes}"
                    f" (no folder for: {missing or 'none'}; not in classes: {extra or 'none'})"
                )
            classes = list(self.declared_classes)
        files, labels = [], []
        for index, name in enumerate(classes):
            images = sorted(p for p in (self.source / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            for path in [self.source / name, *images]:
                _check_name(path)
            files += images
            labels += [index] * len(images)
        if not files:
            raise InputError(f"{self.source}: {field} folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.classes, self._files, self._labels = classes, files, np.asarray(labels, np.int64)

    def _open_npz(self, field: str) -> None:
        try:
            archive = np.load(self.source, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.source}: not a readable .npz file ({exc})") from None
        key = self.input.name if self.input.name in archive else "x"
        if key not in archive:
            raise InputError(f"{self.source}: {field} .npz needs an array named 'x' or '{self.input.name}', found {sorted(archive)}")
        array = archive[key]
        expected = _expected(self.input)
        if array.ndim != len(self.input.shape) or any(
            isinstance(want, int) and want > 0 and got != want for want, got in zip(expected, array.shape[1:], strict=True)
        ):
            raise InputError(
                f"{self.source}: array '{key}' has shape {list(array.shape)}, expected [N, {', '.join(map(str, expected))}]"
                f" for input '{self.input.name}'"
            )
        if array.dtype != np.dtype(self.input.dtype):
            raise InputError(f"{self.source}: array '{key}' has dtype {array.dtype}, expected {self.input.dtype}")
        if len(array) == 0:
            raise InputError(f"{self.source}: array '{key}' holds no samples")
        self._array = array
        for label_key in ("labels", "y"):
            if label_key in archive:
                stored = archive[label_key]
                self._labels = stored.astype(np.int64) if stored.dtype.kind in "iub" else stored
                if len(self._labels) != len(array):
                    raise InputError(f"{self.source}: '{label_key}' has {len(self._labels)} entries for {len(array)} samples")
        if "classes" in archive:
            self.classes = [str(c) for c in archive["classes"]]

    def _select(self, samples: int | None, seed: int, sequence_length: int | None = None) -> None:
        total = self.total
        if samples is None or samples >= total:
            self._order = np.arange(total)
        elif sequence_length:  # whole sequences, in order
            count = total // sequence_length
            wanted = min(count, -(-samples // sequence_length))
            starts = np.sort(np.random.default_rng(seed).permutation(count)[:wanted]) * sequence_length
            self._order = (starts[:, None] + np.arange(sequence_length)).ravel()
        else:
            self._order = np.sort(np.random.default_rng(seed).permutation(total)[:samples])

    def in_order(self) -> None:
        """Select the first samples in order instead of a random subset (one sequence must stay whole)."""
        self._order = np.arange(min(self.total, self._samples or self.total))

    def __len__(self) -> int:
        return len(self._order)

    @property
    def total(self) -> int:
        """Samples in the source, before the selection."""
        return len(self._files) if self._array is None else len(self._array)

    @property
    def order(self) -> np.ndarray:
        """Indices of the selected samples among all samples of the source."""
        return self._order

    @property
    def files(self) -> list[Path]:
        """The selected image files, in order (empty for .npz data)."""
        return [self._files[int(i)] for i in self._order] if self._array is None else []

    @property
    def labels(self) -> np.ndarray | None:
        """Labels of the selected samples, in order."""
        return None if self._labels is None else self._labels[self._order]

    def _sample(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """File sample ``index``, decoded into ``out`` (a batch's slot) when given."""
        if self._files[index].suffix == ".npy":
            try:
                sample = np.load(self._files[index], allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InputError(f"{self._files[index]}: not a readable .npy file ({exc})") from None
        else:
            sample = preprocess_image(self._files[index], self.preprocess, self.input.layout, out)
        expected = _expected(self.input)
        if any(isinstance(w, int) and w > 0 and w != g for w, g in zip(expected, sample.shape, strict=False)):
            raise InputError(
                f"{self._files[index]}: preprocessed to shape {list(sample.shape)}, but input '{self.input.name}'"
                f" expects {expected}; set preprocess.resize / channel_order in the recipe"
            )
        if out is not None and sample is not out and sample.shape == out.shape:
            out[...] = sample
            return out
        return sample  # in ``out``, or (another shape) on its own: see _filled

    def _new_batch(self, picked: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """An empty batch for the samples ``picked`` and its slots, shaped like the last sample seen."""
        if self._like is None:
            first = self._sample(int(picked[0]))
            self._like = (first.shape, first.dtype)
        shape, dtype = self._like
        x = np.empty((len(picked), *shape), dtype)
        return x, list(x)

    def _filled(self, picked: np.ndarray, x: np.ndarray, slots: list[np.ndarray], samples: list[np.ndarray]) -> np.ndarray:
        """The batch once every sample is decoded: ``x`` when each went to its slot, else the samples stacked (images
        of another size than the ones before: one size per batch, or one clear error)."""
        if all(sample is slot for sample, slot in zip(samples, slots, strict=True)):
            return x
        shapes = [sample.shape for sample in samples]
        if len(set(shapes)) > 1:
            other = next(i for i, shape in enumerate(shapes) if shape != shapes[0])
            raise InputError(
                f"{self._files[int(picked[other])]}: preprocessed to shape {list(shapes[other])}, but"
                f" {self._files[int(picked[0])].name} in the same batch to {list(shapes[0])}: samples of one batch"
                " need one shape; set preprocess.resize in the recipe"
            )
        self._like = (shapes[0], samples[0].dtype)
        return np.stack(samples)

    def batches(self, batch_size: int, decoders: Executor | None = None, ahead: int = 2) -> Iterator[Batch]:
        """Yield the selected samples in order, ``batch_size`` at a time (the last batch may be smaller).

        Images are decoded straight into their batch. ``decoders``: a pool that decodes the images of the next
        ``ahead`` batches while this one is used.
        """
        starts = range(0, len(self._order), batch_size)
        if self._array is not None:  # in memory: a copy, so that a batch never aliases the data set
            for start in starts:
                yield self._batch(start, self._array[self._order[start : start + batch_size]])
            return
        if decoders is None:
            for start in starts:
                picked = self._order[start : start + batch_size]
                x, slots = self._new_batch(picked)
                samples = [self._sample(int(index), slot) for index, slot in zip(picked, slots, strict=True)]
                yield self._batch(start, self._filled(picked, x, slots, samples))
            return
        queued: deque[tuple[int, np.ndarray, tuple[np.ndarray, list[np.ndarray]], list[Future[np.ndarray]]]] = deque()
        upcoming = iter(starts)
        try:
            while True:
                while len(queued) <= ahead and (following := next(upcoming, None)) is not None:
                    picked = self._order[following : following + batch_size]
                    x, slots = batch = self._new_batch(picked)
                    decoding = [decoders.submit(self._sample, int(i), slot) for i, slot in zip(picked, slots, strict=True)]
                    queued.append((following, picked, batch, decoding))
                if not queued:
                    return
                first, picked, (x, slots), decoding = queued.popleft()
                yield self._batch(first, self._filled(picked, x, slots, [sample.result() for sample in decoding]))
        finally:
            for _, _, _, decoding in queued:
                for sample in decoding:
                    sample.cancel()

    def _batch(self, start: int, x: np.ndarray) -> Batch:
        labels = None if self._labels is None else self._labels[self._order[start : start + len(x)]]
        return Batch(x=x.astype(self.input.dtype, copy=False), labels=labels)

    def load(self) -> Batch:
        """All selected samples as one batch (for validation sets, which are small)."""
        return next(self.batches(max(len(self), 1)))


def check_same_classes(calibration: Dataset, validation: Dataset) -> None:
    """Calibration and validation folders must name the same classes in the same order."""
    if calibration.classes and validation.classes and calibration.classes != validation.classes:
        only_cal = sorted(set(calibration.classes) - set(validation.classes))
        only_val = sorted(set(validation.classes) - set(calibration.classes))
        raise InputError(
            f"class folders differ: calibration {calibration.source} has {calibration.classes}, validation "
            f"{validation.source} has {validation.classes} (only in calibration: {only_cal}; only in validation: {only_val})"
        )
