"""The device feeds each input and cuts each output on its own batch axis, as the host's data says (a recurrent
state ``[2, N, 4]`` holds its samples on axis 1), also on an engine built with static shapes; and a model with
such a state deploys locally with every output per sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgeq.device.backend import TensorSpec
from edgeq.device.batches import (
    AXIS_NAMES,
    AXIS_VALUES,
    axes_columns,
    batch_size,
    pick_inputs,
    run_all,
    sample_count,
    stored_axes,
)
from edgeq.device.cli import parse_axes
from edgeq.device.errors import AgentError
from edgeq.device.ort_backend import OrtSession

AXES = {"x": 0, "state": 1, "y": 0, "stateN": 1}


def _state_net(batch: int | str) -> onnx.ModelProto:
    """y = 2 x + sum(state of the sample); stateN = state / 2 + sum(x of the sample). x [B, 3], state [2, B, 4]."""
    nodes = [helper.make_node("ReduceSum", ["state", "axes02"], ["s"], keepdims=1),  # [1, B, 1]
             helper.make_node("Squeeze", ["s", "axis0"], ["s2"]),  # [B, 1]
             helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Add", ["x2", "s2"], ["y"]),
             helper.make_node("ReduceSum", ["x", "axis1"], ["t"], keepdims=1),  # [B, 1], broadcast on [2, B, 4]
             helper.make_node("Mul", ["state", "half"], ["h"]), helper.make_node("Add", ["h", "t"], ["stateN"])]
    inits = [numpy_helper.from_array(np.array([0, 2], np.int64), "axes02"), numpy_helper.from_array(np.array([0], np.int64), "axis0"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"), numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    graph = helper.make_graph(
        nodes, "state", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3]),
                         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, batch, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _samples(count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"x": rng.normal(size=(count, 3)).astype(np.float32), "state": rng.normal(size=(count, 2, 4)).astype(np.float32)}


def _one_by_one(model: onnx.ModelProto, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each sample run alone, outputs joined on their batch axes: what the device must give."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [session.run(None, {"x": samples["x"][i : i + 1], "state": samples["state"][i : i + 1].transpose(1, 0, 2)})
            for i in range(len(samples["x"]))]
    return {"y": np.concatenate([r[0] for r in runs]), "stateN": np.concatenate([r[1] for r in runs], axis=1)}


def _on_device(path: Path, arrays: dict[str, np.ndarray], batch: int | None) -> tuple[dict[str, np.ndarray], int]:
    """The way the agent's evaluate runs the data: pick the inputs, size the batch, run every sample."""
    session = OrtSession(str(path), 1)
    inputs, axes = pick_inputs(arrays, session.inputs), stored_axes(arrays)
    size = batch_size(session.inputs, batch, axes)
    assert sample_count(inputs) == len(arrays["x"])
    return run_all(session, inputs, size, axes)[0], size


@pytest.mark.parametrize(("batch", "requested", "expected_batch"), [(1, None, 1), ("N", 2, 2), ("N", None, 32)])
def test_state_on_axis_1_is_fed_and_cut_on_axis_1(tmp_path: Path, batch: int | str, requested: int | None,
                                                   expected_batch: int) -> None:
    """A static engine ([1, 3], [2, 1, 4], as TensorRT builds it) and a dynamic one fed 2 at a time (5 samples: the
    last batch padded) give what each sample gives alone."""
    model = _state_net(batch)
    onnx.save(model, tmp_path / "model.onnx")
    samples = _samples(5)
    outputs, size = _on_device(tmp_path / "model.onnx", {**samples, **axes_columns(AXES)}, requested)
    assert size == expected_batch
    want = _one_by_one(model, samples)
    assert outputs["y"].shape == (5, 3) and outputs["stateN"].shape == (2, 5, 4)
    np.testing.assert_allclose(outputs["y"], want["y"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outputs["stateN"], want["stateN"], rtol=1e-6, atol=1e-6)


def test_a_static_engine_refuses_a_batch_it_cannot_take(tmp_path: Path) -> None:
    onnx.save(_state_net(1), tmp_path / "model.onnx")
    with pytest.raises(AgentError, match=r"fixed at \[1\]"):
        _on_device(tmp_path / "model.onnx", {**_samples(3), **axes_columns(AXES)}, 2)


def test_an_input_without_a_batch_axis_is_fed_whole_and_an_output_without_one_kept_once(tmp_path: Path) -> None:
    """x [B, 3] * gain [3] -> y [B, 3]; total = sum(gain) [1], the same for every batch."""
    nodes = [helper.make_node("Mul", ["x", "gain"], ["y"]), helper.make_node("ReduceSum", ["gain"], ["total"], keepdims=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3]),
                                           helper.make_tensor_value_info("gain", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3]),
                               helper.make_tensor_value_info("total", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    x, gain = _samples(5)["x"], np.array([1.0, 2.0, 3.0], np.float32)
    axes = axes_columns({"x": 0, "gain": None, "y": 0, "total": None})
    outputs, _ = _on_device(tmp_path / "model.onnx", {"x": x, "gain": gain, **axes}, 2)  # no 'constants' array: the axes say it
    np.testing.assert_allclose(outputs["y"], x * gain, rtol=1e-6)
    np.testing.assert_array_equal(outputs["total"], [6.0])


def test_malformed_or_incomplete_axes_are_named() -> None:
    with pytest.raises(AgentError, match="equally long 1-D arrays"):
        stored_axes({AXIS_NAMES: np.array(["x", "y"]), AXIS_VALUES: np.array([0], np.int64)})
    with pytest.raises(AgentError, match="does not name the model's input 'state'"):
        batch_size([TensorSpec("state", [2, 1, 4])], None, stored_axes(axes_columns({"x": 0})))


def test_bench_batch_axes_are_checked() -> None:
    assert parse_axes('{"x": 0, "state": 1, "sr": -1}') == {"x": 0, "state": 1, "sr": -1}
    for bad in ('{"x": "0"}', '[0]', '{"x": -2}', "{x"):
        with pytest.raises(AgentError, match="--batch-axes"):
            parse_axes(bad)


def test_data_without_axes_runs_as_before(tmp_path: Path) -> None:
    """Older data (no batch_axes): the batch from every input's dim 0, outputs cut on axis 0."""
    onnx.save(_state_net("N"), tmp_path / "model.onnx")
    samples = _samples(4)
    outputs, size = _on_device(tmp_path / "model.onnx", dict(samples), None)
    assert size == 2  # the state's fixed dim 0, taken for the batch
    assert outputs["stateN"].shape == (4, 2, 4)  # cut on axis 0, as before


def _recipe(folder: Path, samples: int) -> Path:
    onnx.save(_state_net("N"), folder / "model.onnx")
    np.savez(folder / "data.npz", x=_samples(samples)["x"])
    data = {"name": "stateful", "model": "model.onnx",
            "inputs": [{"name": "x", "shape": ["N", 3], "layout": "NC"},
                       {"name": "state", "shape": [2, "N", 4], "layout": "other", "state": "stateN"}],
            "calibration": {"path": "data.npz", "batch_size": 4}, "validation": {"path": "data.npz"},
            "budget": {"accuracy_drop": 50.0}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(data))
    return folder / "recipe.yaml"


@pytest.mark.slow
def test_a_model_with_state_on_axis_1_deploys_with_every_output_per_sample(tmp_path: Path) -> None:
    from tests.cli import run_edgeq

    path = _recipe(tmp_path, 7)
    deployed = run_edgeq("deploy", path, "--target", "local", "--workdir", tmp_path / "device", "--json")
    assert deployed.code == 0, deployed.stderr
    (report,) = json.loads(deployed.stdout)
    assert report["evaluation"]["samples"] == 7
    (validation,) = [p for p in tmp_path.rglob("validation.npz") if ".store" not in p.parts]  # the artifact
    with np.load(validation) as stored:
        assert stored_axes(dict(stored)) == AXES  # the host measured stateN's axis by running the FP32 model
        fed = {"x": stored["x"], "state": stored["state"]}
    want = _one_by_one(_state_net("N"), fed)
    pulled = [p for p in tmp_path.rglob("outputs.fp32.npz") if "device" not in p.relative_to(tmp_path).parts[:1]]
    assert pulled
    with np.load(pulled[0]) as fp32:
        np.testing.assert_allclose(fp32["stateN"], want["stateN"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fp32["y"], want["y"], rtol=1e-5, atol=1e-6)
    smoke = run_edgeq("smoke", path, "--target", "local", "--workdir", tmp_path / "device", "--json")
    assert smoke.code == 0, smoke.stderr
    assert json.loads(smoke.stdout)[0]["passed"]


def test_the_hosts_prediction_joins_each_output_on_its_batch_axis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeq import recipe as recipe_module
    from edgeq import targets
    from edgeq.calibrate import calibrate, pipeline, predict

    samples = _samples(7)
    fed = {"x": samples["x"], "state": samples["state"].transpose(1, 0, 2)}  # as the model takes them
    batches = [{name: a[:, i : i + 3] if name == "state" else a[i : i + 3] for name, a in fed.items()} for i in (0, 3, 6)]
    (joined,) = predict.outputs([_state_net("N")], batches, {"y": 0, "stateN": 1})
    want = _one_by_one(_state_net("N"), samples)
    np.testing.assert_allclose(joined["stateN"], want["stateN"], rtol=1e-5, atol=1e-6)  # [2, 7, 4]: 3 + 3 + 1 samples
    np.testing.assert_allclose(joined["y"], want["y"], rtol=1e-5, atol=1e-6)

    monkeypatch.setattr(pipeline, "VALIDATION_BUDGET", 2 * (3 + 2 * 4) * 4)  # two samples per validation batch
    result = calibrate(recipe_module.load(_recipe(tmp_path, 7)), targets.resolve("local"), progress=False)
    assert result.report.accuracy.samples == 7 and result.report.accuracy.cosine["stateN"] > 0.99
