"""The validation set's .npz written batch by batch: the same bytes as :func:`edgeq.npz.npz_bytes`, without the whole set in memory.

Each member is one ``np.save`` stream (a version 1.0 header, then the C-order data) deflated as it
is written; zipfile is given the member's size up front, as ``writestr`` is, so the headers match too.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from edgeq.npz import _EPOCH


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
    """Write ``columns`` (sorted by name, as npz_bytes does) to the seekable binary ``handle``."""
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
