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
