"""Hostile or odd inputs through the real command line: metric code from outside the recipe folder, a FIFO named
like an image, a 900-Mpixel PNG, non-UTF-8 file names, an ONNX declaring a 1e9-element initializer, `inf`
budgets and impossible shapes. Each ends with exit 2 and one clear message, quickly."""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper
from PIL import Image

from edgeq import recipe as recipes
from edgeq.errors import InputError
from tests.calibrate_nets import fire_net
from tests.cli import CliResult

SIZE = 32


def run_limited(*args: str | Path, timeout: float = 60, memory_gb: float = 4) -> CliResult:
    """`python -m edgeq ARGS` with its address space capped: a runaway allocation fails there, not on this machine."""
    limit = int(memory_gb * 2**30)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "edgeq", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    return CliResult(done.returncode, done.stdout, done.stderr)


def image_recipe(folder: Path, **validation: str) -> Path:
    """A tiny network and a folder of PNGs, two classes, used for calibration and validation."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(fire_net(classes=2, size=SIZE), folder / "model.onnx")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (folder / "images" / label).mkdir(parents=True)
        for index in range(3):
            pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "images" / label / f"{index}.png")
    recipe = {
        "name": "odd-inputs",
        "model": "model.onnx",
        "inputs": [{"name": "data", "shape": ["N", 3, SIZE, SIZE]}],
        "preprocess": {"resize": [SIZE, SIZE]},
        "calibration": {"path": "images", "batch_size": 4},
        "validation": {"path": "images", **validation},
        "budget": {"accuracy_drop": 100.0},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def calibrate(recipe: Path, timeout: float = 60) -> CliResult:
    return run_limited("calibrate", recipe, "-t", "local", "--out", recipe.parent / "out", timeout=timeout)


def one_clear_error(result: CliResult, *expected: str) -> None:
    assert result.code == 2, (result.code, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def test_metric_code_from_outside_the_recipe_folder_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef f(scores, labels):\n    return 1.0\n")
    recipe = image_recipe(tmp_path / "recipe", metric="../evil.py:f")
    one_clear_error(run_limited("recipe", "validate", recipe), "validation.metric", "outside the recipe folder")
    one_clear_error(calibrate(recipe), "outside the recipe folder")
    (recipe.parent / "link.py").symlink_to(tmp_path / "evil.py")  # a symlink inside that leads out
    data = yaml.safe_load(recipe.read_text())
    data["validation"]["metric"] = "link.py:f"
    recipe.write_text(yaml.safe_dump(data))
    one_clear_error(calibrate(recipe), "outside the recipe folder")
    assert not marker.exists()


def test_a_fifo_named_like_an_image_is_refused_not_waited_on(tmp_path: Path) -> None:
    recipe = image_recipe(tmp_path)
    fifo = recipe.parent / "images" / "a" / "9.png"
    os.mkfifo(fifo)
    result = calibrate(recipe, timeout=60)
    one_clear_error(result, str(fifo), "not a regular file")


def _png_900_megapixels(path: Path) -> None:
    """A valid 30000 x 30000 grayscale PNG of zeros (about 875 KB), written without 900 MB in memory."""
    width = height = 30000
    rows = 1000
    block = bytes(width + 1) * rows  # each row: filter byte 0 and zero pixels
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    repeated = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)  # byte-aligned: the block repeats as is
    total = (width + 1) * height
    adler = ((total % 65521) << 16) | 1  # Adler-32 of `total` zero bytes
    stream = b"\x78\xda" + repeated * (height // rows) + b"\x01\x00\x00\xff\xff" + struct.pack(">I", adler)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b""))


def test_a_900_megapixel_png_is_refused(tmp_path: Path) -> None:
    recipe = image_recipe(tmp_path)
    big = recipe.parent / "images" / "b" / "huge.png"
    _png_900_megapixels(big)
    assert big.stat().st_size < 1_000_000
    one_clear_error(calibrate(recipe), str(big), "pixels")


def test_non_utf8_file_names_are_reported(tmp_path: Path) -> None:
    recipe = image_recipe(tmp_path)
    folder = os.fsencode(recipe.parent / "images" / "a")
    os.link(os.path.join(folder, b"0.png"), os.path.join(folder, b"caf\xe9.png"))
    result = calibrate(recipe)
    one_clear_error(result, "caf\\xe9.png", "not valid UTF-8")


def test_check_on_an_onnx_declaring_a_billion_element_initializer_exits_2(tmp_path: Path) -> None:
    weights = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1_000_000_000], raw_data=b"\0" * 4)
    tensor = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1_000_000_000])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1_000_000_000])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [tensor], [out], [weights])
    path = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    result = run_limited("check", path, "-t", "jetson-orin", timeout=60, memory_gb=3)
    one_clear_error(result, "tensor 'w' declares 1,000,000,000 elements")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"budget": {"accuracy_drop": float("inf")}}, "budget.accuracy_drop"),
        ({"budget": {"latency_p99_ms": float("inf")}}, "budget.latency_p99_ms"),
        ({"budget": {"accuracy_drop": float("nan")}}, "budget.accuracy_drop"),
        ({"inputs": [{"name": "data", "shape": ["N", 0, 32, 32]}]}, "inputs.0.shape"),
        ({"inputs": [{"name": "data", "shape": [-3, 3, 32, 32]}]}, "inputs.0.shape"),
        ({"preprocess": {"resize": [0, 32]}}, "preprocess.resize"),
    ],
)
def test_the_recipe_schema_refuses_infinite_budgets_and_impossible_shapes(tmp_path: Path, change: dict, field: str) -> None:
    base = yaml.safe_load(image_recipe(tmp_path).read_text())
    assert recipes.parse(base, tmp_path / "recipe.yaml").name == "odd-inputs"
    with pytest.raises(InputError, match=rf"{field}"):
        recipes.parse({**base, **change}, tmp_path / "recipe.yaml")


def test_a_fifo_in_place_of_a_recipe_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "recipe.yaml"
    os.mkfifo(fifo)
    writer = threading.Timer(30, lambda: open(fifo, "w").close())  # unblocks a reader that waits (today's bug)
    writer.start()
    try:
        one_clear_error(run_limited("recipe", "validate", fifo, timeout=60), "not a regular file")
    finally:
        writer.cancel()
