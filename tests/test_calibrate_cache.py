"""The TensorRT calibration cache: header versions, scale encoding, writing and reading."""

from __future__ import annotations

import pytest

from edgeq.calibrate.cache import build_cache, encode_scale, header_version, parse_cache
from edgeq.errors import InputError


@pytest.mark.parametrize(
    ("version", "number"),
    [((8, 5, 2), 8502), ((8, 6, 1), 8601), ((8, 2, 1), 8201), ((10, 3, 0), 100300), ((10, 16, 2), 101602), ((11, 4, 1), 110401)],
)
def test_header_version_follows_nv_tensorrt_version(version: tuple[int, int, int], number: int) -> None:
    assert header_version(version) == number
    assert build_cache({"x": 1.0}, version).to_text().splitlines()[0] == f"TRT-{number}-EntropyCalibration2"


def test_amax_one_encodes_as_published_value() -> None:
    cache = build_cache({"sigmoid_out": 1.0}, (10, 3, 0))
    assert cache.to_text() == "TRT-100300-EntropyCalibration2\nsigmoid_out: 3c010204\n"
    assert cache.scales["sigmoid_out"] == pytest.approx(1 / 127, rel=1e-7)


def test_encoding_is_eight_lower_case_big_endian_digits() -> None:
    assert encode_scale(1.0) == "3f800000"
    assert encode_scale(2.0**-100) == "0d800000"  # small values keep their leading zero
    assert encode_scale(0.5) == "3f000000"
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            encode_scale(bad)


def test_write_read_round_trip_keeps_names_order_and_float32_scales() -> None:
    amax = {"data": 2.64, "conv/out:0": 0.001, "Relu_1_output": 37.5, "(Unnamed Layer* 3) [Constant]_output": 1e-3}
    text = build_cache(amax, (8, 5, 2)).to_text()
    cache = parse_cache(text)
    assert cache.version == 8502 and cache.algorithm == "EntropyCalibration2"
    assert list(cache.scales) == list(amax)
    for name, value in amax.items():
        assert cache.amax()[name] == pytest.approx(value, rel=1e-6)
    assert cache.to_text() == text


def test_reads_caches_of_other_tools() -> None:
    # TAO writes unpadded hex, Windows tools CRLF; TensorRT's own MinMax header.
    cache = parse_cache("TRT-10300-MinMaxCalibration\r\nscores: 3c010204\r\ntiny: d800000\r\n")
    assert cache.header == "TRT-10300-MinMaxCalibration"
    assert cache.scales["scores"] == pytest.approx(1 / 127, rel=1e-7)
    assert cache.scales["tiny"] == 2.0**-100  # read as 0d800000


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "header"), ("conv: 3c010204\n", "header"), ("TRT-abc-EntropyCalibration2\n", "malformed header"),
     ("TRT-8502-EntropyCalibration2\nconv 3c010204\n", "line 2"), ("TRT-8502-EntropyCalibration2\nconv: xyz\n", "line 2")],
)
def test_malformed_caches_raise_one_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        parse_cache(text, "cal.cache")
