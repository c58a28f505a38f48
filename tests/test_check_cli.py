"""`edgeq check` as a user runs it: exit codes, table and --json, from a recipe or a model file."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from tests.check_graphs import conv
from tests.cli import run_edgeq

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "squeezenet-digits" / "recipe.yaml"


@pytest.fixture(params=["recipe", "model"])
def source(request, tmp_path) -> Path:
    """The example recipe when its model is trained, else a small model file (opset 13) written here."""
    if request.param == "recipe":
        if not (RECIPE.parent / "model.onnx").is_file():
            pytest.skip("recipes/squeezenet-digits/model.onnx not trained yet: tested through a model file")
        return RECIPE
    path = tmp_path / "model.onnx"
    onnx.save(conv(opset=13, batch="N"), str(path))
    return path


def test_nano_has_no_fast_int8_exit_1(source):
    result = run_edgeq("check", source, "--target", "jetson-nano")
    assert result.code == 1, result.stderr
    assert "no fast INT8" in result.stderr
    assert "will not build" in result.stdout


def test_orin_json_exit_0_with_every_node(source):
    result = run_edgeq("check", source, "--target", "jetson-orin", "--json")
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] and data["target"] == "agx-orin-jp6.2"
    assert data["nodes"] and all(n["verdict"] for n in data["nodes"])
    assert all(n["verdict"] == "int8" for n in data["nodes"] if n["op"] == "Conv")
    assert data["shares"]["int8"] == 1.0


def test_dla_with_dynamic_batch_fails_and_a_fixed_shape_passes(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(conv(batch="N", hw=16), str(path))
    dynamic = run_edgeq("check", path, "-t", "jetson-xavier", "--dla", "--json")
    assert dynamic.code == 1 and "dynamic input shape" in dynamic.stderr
    fixed = run_edgeq("check", path, "-t", "jetson-xavier", "--dla-core", "1", "--shape", "x=1x8x16x16", "--json")
    assert fixed.code == 0, fixed.stderr
    data = json.loads(fixed.stdout)
    assert data["dla_core"] == 1 and data["nodes"][0]["dla"] == "dla" and data["shares"]["dla"] == 1.0


@pytest.mark.parametrize(("args", "message"), [
    (("--target", "jetson-orn"), "unknown target"),
    (("--target", "jetson-orin-nano", "--dla"), "has no DLA"),
])
def test_bad_target_or_dla_request_exit_2(tmp_path, args, message):
    path = tmp_path / "model.onnx"
    onnx.save(conv(), str(path))
    result = run_edgeq("check", path, *args)
    assert result.code == 2 and message in result.stderr


def test_not_an_onnx_file_exit_2(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a model")
    result = run_edgeq("check", bogus)
    assert result.code == 2 and "notes.txt" in result.stderr
    missing = run_edgeq("check", tmp_path / "absent.onnx")
    assert missing.code == 2 and "not found" in missing.stderr
