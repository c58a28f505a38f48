"""Byte-stable .npz files: readable by numpy, identical bytes for identical arrays however they are streamed."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from edgeq.npz import Column, npz_bytes, write_npz


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "data": rng.standard_normal((37, 3, 8, 8)).astype(np.float32),
        "labels": rng.integers(0, 10, 37),
        "classes": np.array(list("abcdefghij"), dtype=np.str_),
    }


def test_numpy_reads_it_back() -> None:
    arrays = _arrays()
    with np.load(io.BytesIO(npz_bytes(arrays))) as loaded:
        assert set(loaded.files) == set(arrays)
        for name, array in arrays.items():
            np.testing.assert_array_equal(loaded[name], array)


def test_same_arrays_same_bytes_whenever_and_however_written() -> None:
    arrays = _arrays()
    first = npz_bytes(arrays)
    with zipfile.ZipFile(io.BytesIO(first)) as archive:  # no wall-clock timestamp in the bytes
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    x = arrays["data"]
    streamed = io.BytesIO()
    write_npz(streamed, {
        "data": Column(x.dtype, x.shape, (x[i : i + 5] for i in range(0, len(x), 5))),
        "labels": Column(arrays["labels"].dtype, arrays["labels"].shape, [arrays["labels"]]),
        "classes": Column(arrays["classes"].dtype, arrays["classes"].shape, [arrays["classes"]]),
    })
    assert streamed.getvalue() == first


def test_blocks_must_fill_the_declared_shape() -> None:
    x = _arrays()["data"]
    with pytest.raises(ValueError, match="blocks hold"):
        write_npz(io.BytesIO(), {"data": Column(x.dtype, x.shape, [x[:36]])})


def test_blocks_compressed_on_a_pool_give_the_same_bytes_and_one_deflate_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from edgeq import npz

    monkeypatch.setattr(npz, "BLOCK", 1000)  # data.npy spans many blocks, cut across the streamed rows
    arrays = _arrays()
    alone = npz_bytes(arrays)
    x = arrays["data"]
    with ThreadPoolExecutor(3) as pool:
        pooled = io.BytesIO()
        write_npz(pooled, {
            "data": Column(x.dtype, x.shape, (x[i : i + 7] for i in range(0, len(x), 7))),
            "labels": Column(arrays["labels"].dtype, arrays["labels"].shape, [arrays["labels"]]),
            "classes": Column(arrays["classes"].dtype, arrays["classes"].shape, [arrays["classes"]]),
        }, pool)
    assert pooled.getvalue() == alone
    with zipfile.ZipFile(io.BytesIO(alone)) as archive:
        assert archive.testzip() is None  # every member's CRC checks out
        info = archive.getinfo("data.npy")
        assert info.compress_type == zipfile.ZIP_DEFLATED and info.compress_size < info.file_size
    with np.load(io.BytesIO(alone)) as loaded:
        np.testing.assert_array_equal(loaded["data"], x)


def test_zip64_records_when_sizes_pass_the_32_bit_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeq import npz

    monkeypatch.setattr(npz, "_ZIP64_LIMIT", 3000)  # as if data.npy (and the offsets after it) were over 4 GiB
    arrays = _arrays()
    data = npz_bytes(arrays)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert archive.getinfo("data.npy").file_size == arrays["data"].nbytes + 128  # the .npy header is 128 bytes
    with np.load(io.BytesIO(data)) as loaded:
        for name, array in arrays.items():
            np.testing.assert_array_equal(loaded[name], array)
