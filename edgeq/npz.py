"""Byte-stable, compressed .npz files: the same arrays always give the same bytes, so content-addressed sync
skips them; written batch by batch when the arrays are larger than memory should hold.

Each member is one ``np.save`` stream (a version 1.0 header, then the C-order data) deflated as it is
written, with a fixed timestamp; numpy.load reads the result.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass
class Column:
    """One array of the archive, given as its dtype, full shape and the row blocks that make it up."""

    dtype: np.dtype
    shape: tuple[int, ...]
    blocks: Iterable[np.ndarray]


def _header(column: Column) -> bytes:
    buffer = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype(column.dtype))
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": column.shape})
    return buffer.getvalue()


def write_npz(handle: BinaryIO, columns: dict[str, Column]) -> None:
    """Write ``columns`` (sorted by name) to the seekable binary ``handle``."""
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(columns):
            column = columns[name]
            header = _header(column)
            size = int(np.prod(column.shape)) * np.dtype(column.dtype).itemsize
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = len(header) + size
            written = 0
            with archive.open(info, "w") as member:
                member.write(header)
                for block in column.blocks:
                    data = np.ascontiguousarray(block, dtype=column.dtype)
                    member.write(data.tobytes())
                    written += data.nbytes
            if written != size:
                raise ValueError(f"{name}: the blocks hold {written} bytes, the shape {column.shape} needs {size}")


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The .npz of in-memory ``arrays``."""
    buffer = io.BytesIO()
    write_npz(buffer, {name: Column(np.asarray(a).dtype, np.asarray(a).shape, [np.asarray(a)]) for name, a in arrays.items()})
    return buffer.getvalue()
