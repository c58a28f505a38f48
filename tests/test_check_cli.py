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


def test_dla_on_a_jetpack_72_orin_is_unavailable_with_its_source_and_gpu_only(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(conv(opset=13), str(path))
    result = run_edgeq("check", path, "--target", "agx-orin-jp7.2", "--dla", "--json")
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    found = next(g for g in data["gates"] if g["id"] == "dla_available")
    assert found["status"] == "warn" and "GPU only" in found["message"]
    assert "Orin DLA is not supported at this time" in found["message"]
    assert data["dla_core"] is None and data["dla_counts"] is None and data["rule_files"] == ["gpu-trt10"]
    shown = run_edgeq("check", path, "--target", "orin-nx-jp7.2", "--dla")
    assert shown.code == 0, shown.stderr
    assert "unavailable, GPU only" in shown.stdout and "10.7 was the last 10.x release" in " ".join(shown.stdout.split())


def test_tx2_parser_gate_rejects_nonzero(tmp_path):
    """onnx-tensorrt 8.2-GA has no NonZero importer (operators.md 8.2-GA line 104: N); 8.5-GA added it."""
    from onnx import helper

    from tests.check_graphs import finish

    model = finish([helper.make_node("NonZero", ["x"], ["y"], name="nonzero")], {"x": [1, 8]}, "y", opset=13)
    path = tmp_path / "nonzero.onnx"
    onnx.save(model, str(path))
    result = run_edgeq("check", path, "--target", "tx2-jp4.6", "--json")
    assert result.code == 1
    data = json.loads(result.stdout)
    assert "parser" in data["blockers"]
    node = data["nodes"][0]
    assert node["verdict"] == "unsupported" and "TensorRT 8.2 ONNX parser rejects NonZero" in node["reasons"][0]["message"]
    assert "8.2-GA" in node["reasons"][0]["source"]
    assert run_edgeq("check", path, "--target", "jetson-xavier", "--json").code == 0  # the 8.5 parser takes it
