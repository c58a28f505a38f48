"""Byte-stable, compressed .npz files: the same arrays always give the same bytes, so content-addressed sync
skips them; written batch by batch when the arrays are larger than memory should hold.

Each member is one ``np.save`` stream (a version 1.0 header, then the C-order data), deflated at level
:data:`LEVEL` in blocks of :data:`BLOCK` bytes. Each block is compressed on its own (on a pool of
threads when given one: zlib releases the GIL) and all but the last end with a sync flush, so that
their concatenation is one deflate stream (as pigz does); the block boundaries depend only on the
data, never on the pool. The archive is a plain zip with a fixed timestamp (zip64 records where sizes
need them), which ``numpy.load`` and ``zipfile`` read.
"""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

LEVEL = 1  # zlib level: 3-4x faster than the default 6 on input tensors, about 20 % larger
BLOCK = 1 << 20  # bytes of raw data per independently compressed block
AHEAD = 16  # blocks compressing at once on a pool (bounds the raw bytes held)
_DOS_DATE, _DOS_TIME = (0 << 9) | (1 << 5) | 1, 0  # 1980-01-01 00:00:00
_MAX32 = (1 << 32) - 1  # a 32-bit field holding this says: the value is in the zip64 record
_ZIP64_LIMIT = _MAX32  # sizes and offsets from here on go to zip64 records
_MADE_BY, _NEEDED, _NEEDED_ZIP64 = 20, 20, 45
_DEFLATED = 8  # compression method
_PERMISSIONS = 0o600 << 16  # what zipfile gives a member written through ZipFile.open


@dataclass
class Column:
    """One array of the archive, given as its dtype, full shape and the row blocks that make it up."""

    dtype: np.dtype
    shape: tuple[int, ...]
    blocks: Iterable[np.ndarray]


@dataclass
class _Entry:
    name: bytes
    flags: int
    crc: int
    compressed: int
    size: int
    offset: int


def _header(column: Column) -> bytes:
    buffer = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype(column.dtype))
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": column.shape})
    return buffer.getvalue()


def _deflate(data: bytes | memoryview, final: bool) -> bytes:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def _blocks(chunks: Iterable[memoryview]) -> Iterator[tuple[memoryview | bytes, bool]]:
    """The concatenated ``chunks`` cut at every multiple of :data:`BLOCK`, each with whether it is the last."""
    held = bytearray()
    previous: memoryview | bytes | None = None
    for chunk in chunks:
        while len(chunk):
            if held or len(chunk) < BLOCK:
                take = min(BLOCK - len(held), len(chunk))
                held += chunk[:take]
                chunk = chunk[take:]
                if len(held) < BLOCK:
                    continue
                block: memoryview | bytes = bytes(held)
                held.clear()
            else:
                block, chunk = chunk[:BLOCK], chunk[BLOCK:]
            if previous is not None:
                yield previous, False
            previous = block
    if held:
        if previous is not None:
            yield previous, False
        previous = bytes(held)
    yield (previous if previous is not None else b""), True


def _compressed(chunks: Iterable[memoryview], pool: Executor | None) -> Iterator[bytes]:
    """The deflate stream of ``chunks``, block by block, in order."""
    if pool is None:
        for block, final in _blocks(chunks):
            yield _deflate(block, final)
        return
    running: deque[Future[bytes]] = deque()
    try:
        for block, final in _blocks(chunks):
            running.append(pool.submit(_deflate, block, final))
            if len(running) >= AHEAD:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
    finally:
        for future in running:
            future.cancel()


def _local_header(entry: _Entry, zip64: bool) -> bytes:
    extra = struct.pack("<HHQQ", 1, 16, entry.size, entry.compressed) if zip64 else b""
    sizes = (_MAX32, _MAX32) if zip64 else (entry.compressed, entry.size)
    fixed = struct.pack(
        "<4sHHHHHLLLHH", b"PK\x03\x04", _NEEDED_ZIP64 if zip64 else _NEEDED, entry.flags, _DEFLATED,
        _DOS_TIME, _DOS_DATE, entry.crc, *sizes, len(entry.name), len(extra),
    )
    return fixed + entry.name + extra


def _member(handle: BinaryIO, name: str, column: Column, pool: Executor | None) -> _Entry:
    header = _header(column)
    size = len(header) + int(np.prod(column.shape)) * np.dtype(column.dtype).itemsize
    encoded = name.encode("utf-8")
    entry = _Entry(encoded, 0 if name.isascii() else 0x800, 0, 0, size, handle.tell())
    zip64 = size * 1.05 > _ZIP64_LIMIT  # as zipfile decides: the compressed size may pass the limit too
    handle.write(_local_header(entry, zip64))
    raw = 0

    def chunks() -> Iterator[memoryview]:
        nonlocal raw
        arrays = (np.ascontiguousarray(block, dtype=column.dtype).reshape(-1).view(np.uint8).data for block in column.blocks)
        for view in itertools.chain([memoryview(header)], arrays):
            entry.crc = zlib.crc32(view, entry.crc)
            raw += len(view)
            yield view

    for data in _compressed(chunks(), pool):
        handle.write(data)
        entry.compressed += len(data)
    if raw != size:
        raise ValueError(f"{name}: the blocks hold {raw - len(header)} bytes, the shape {column.shape} needs {size - len(header)}")
    end = handle.tell()
    handle.seek(entry.offset)
    handle.write(_local_header(entry, zip64))
    handle.seek(end)
    return entry


def _central_directory(handle: BinaryIO, entries: list[_Entry]) -> None:
    start = handle.tell()
    for entry in entries:
        big = [value for value in (entry.size, entry.compressed, entry.offset) if value >= _ZIP64_LIMIT]
        zip64 = entry.size * 1.05 > _ZIP64_LIMIT or bool(big)
        extra = struct.pack(f"<HH{len(big)}Q", 1, 8 * len(big), *big) if big else b""
        handle.write(struct.pack(
            "<4sHHHHHHLLLHHHHHLL", b"PK\x01\x02", _MADE_BY, _NEEDED_ZIP64 if zip64 else _NEEDED, entry.flags,
            _DEFLATED, _DOS_TIME, _DOS_DATE, entry.crc,
            *(_MAX32 if value >= _ZIP64_LIMIT else value for value in (entry.compressed, entry.size)),
            len(entry.name), len(extra), 0, 0, 0, _PERMISSIONS, _MAX32 if entry.offset >= _ZIP64_LIMIT else entry.offset,
        ) + entry.name + extra)
    end = handle.tell()
    count, length = len(entries), end - start
    zip64 = count >= 0xFFFF or length >= _ZIP64_LIMIT or start >= _ZIP64_LIMIT
    if zip64:
        handle.write(struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, _NEEDED_ZIP64, _NEEDED_ZIP64, 0, 0, count, count, length, start))
        handle.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1))
    handle.write(struct.pack(
        "<4sHHHHLLH", b"PK\x05\x06", 0, 0, *((0xFFFF, 0xFFFF, _MAX32, _MAX32) if zip64 else (count, count, length, start)), 0,
    ))


def write_npz(handle: BinaryIO, columns: dict[str, Column], pool: Executor | None = None) -> None:
    """Write ``columns`` (sorted by name) to the seekable binary ``handle``; ``pool`` compresses blocks in parallel."""
    entries = [_member(handle, f"{name}.npy", columns[name], pool) for name in sorted(columns)]
    _central_directory(handle, entries)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The .npz of in-memory ``arrays``."""
    buffer = io.BytesIO()
    write_npz(buffer, {name: Column(np.asarray(a).dtype, np.asarray(a).shape, [np.asarray(a)]) for name, a in arrays.items()})
    return buffer.getvalue()
