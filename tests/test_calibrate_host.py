"""Steps 4 and 5 of the host model: DequantizeLinear -> Relu -> QuantizeLinear on one grid is Clip(q, min=z) on the
integers, exactly, and the prediction does not move (edgeq.calibrate.host.relu_chains_to_clip); int8 weights on the
uint8 grid dequantize to the same floats (edgeq.calibrate.host.weights_to_uint8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq import recipe as recipe_module
from edgeq import targets
from edgeq.calibrate import host

EXAMPLE = Path(__file__).resolve().parent.parent / "recipes" / "squeezenet-digits"
TYPES = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}
# scales from the smallest normal float32 to the largest step 4 takes, and 64 random ones around activations'
SCALES = np.concatenate([np.geomspace(host.NORMAL_SCALES[0], host.NORMAL_SCALES[1], 257, dtype=np.float64),
                         np.random.default_rng(0).uniform(1e-4, 1.0, 64)]).astype(np.float32)
SCALES[0], SCALES[256] = host.NORMAL_SCALES  # the ends themselves, not their float64 -> float32 roundings


def _plain(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The model on ONNX Runtime's reference kernels, every graph optimization off."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _chain(dtype: type, scale: np.ndarray, zero: np.ndarray, shape: list[int], axis: int | None = None,
           out_scale: np.ndarray | None = None, out_zero: np.ndarray | None = None) -> onnx.ModelProto:
    attrs = {} if axis is None else {"axis": axis}
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["x"], **attrs),
         helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("QuantizeLinear", ["r", "s_out", "z_out"], ["y"], **attrs)],
        "chain", [helper.make_tensor_value_info("q", TYPES[dtype], shape)],
        [helper.make_tensor_value_info("y", TYPES[dtype], shape)],
        [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero, "z"),
         numpy_helper.from_array(scale if out_scale is None else out_scale, "s_out"),
         numpy_helper.from_array(zero if out_zero is None else out_zero, "z_out")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_weights_on_the_uint8_grid_dequantize_to_the_same_floats() -> None:
    """Per channel with a zero point, per tensor without one, a weight read by two DequantizeLinear; an asymmetric
    int8 weight (zero point not 0) and a uint8 one stay."""
    rng = np.random.default_rng(4)
    w = rng.integers(-128, 128, (4, 3, 2, 2)).astype(np.int8)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(rng.uniform(0.01, 1, 4).astype(np.float32), "s4"),
             numpy_helper.from_array(np.zeros(4, np.int8), "z4"), numpy_helper.from_array(np.float32(0.05), "s1"),
             numpy_helper.from_array(np.int8(3), "z_odd"), numpy_helper.from_array(w.view(np.uint8), "u")]
    nodes = [helper.make_node("DequantizeLinear", ["w", "s4", "z4"], ["per_channel"], axis=0),
             helper.make_node("DequantizeLinear", ["w", "s1"], ["per_tensor"]),
             helper.make_node("DequantizeLinear", ["w", "s1", "z_odd"], ["asymmetric"]),
             helper.make_node("DequantizeLinear", ["u", "s1"], ["unsigned"])]
    outputs = [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, list(w.shape)) for n in nodes]
    model = helper.make_model(helper.make_graph(nodes, "weights", [], outputs, inits), opset_imports=[helper.make_opsetid("", 13)])
    moved = onnx.ModelProto()
    moved.CopyFrom(model)
    assert host.weights_to_uint8(moved.graph) == 1  # one weight tensor, read twice
    onnx.checker.check_model(moved)
    dtypes = {i.name: numpy_helper.to_array(i).dtype for i in moved.graph.initializer}
    assert [dtypes[n.input[0]] for n in moved.graph.node] == [np.uint8, np.uint8, np.int8, np.uint8]
    assert [dtypes[n.input[2]] if len(n.input) > 2 else None for n in moved.graph.node] == [np.uint8, np.uint8, np.int8, None]

    def run(m: onnx.ModelProto) -> list[np.ndarray]:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {})

    for before, after in zip(run(model), run(moved), strict=True):
        assert before.tobytes() == after.tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_the_chain_is_max_with_the_zero_point_for_every_value_zero_point_and_scale(dtype: type) -> None:
    """ONNX Runtime's own DequantizeLinear, Relu and QuantizeLinear, per row one (scale, zero point): every
    8-bit value q against every zero point z, over scales spanning the normal float32 range."""
    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1).astype(dtype)
    zeros = np.tile(values, len(SCALES))
    scales = np.repeat(SCALES, len(values))
    q = np.broadcast_to(values, (len(zeros), len(values))).copy()
    y = _plain(_chain(dtype, scales, zeros, list(q.shape), axis=0), {"q": q})
    np.testing.assert_array_equal(y, np.maximum(q, zeros[:, None]))


@pytest.mark.parametrize("dtype, zero", [(np.uint8, 128), (np.uint8, 0), (np.uint8, 255), (np.int8, 0), (np.int8, -128)])
def test_rewritten_chain_gives_the_same_integers(dtype: type, zero: int) -> None:
    q = np.arange(np.iinfo(dtype).min, np.iinfo(dtype).max + 1).astype(dtype)
    for scale in SCALES[::16]:
        model = _chain(dtype, np.array(scale, np.float32), np.array(zero, dtype), [len(q)])
        before = _plain(model, {"q": q})
        assert host.relu_chains_to_clip(model) == 1
        assert [n.op_type for n in model.graph.node] == ["Clip"]
        onnx.checker.check_model(model)
        np.testing.assert_array_equal(_plain(model, {"q": q}), before)


@pytest.mark.parametrize("change", ["scale", "zero", "subnormal scale", "per-channel", "second reader", "output"])
def test_chains_off_one_grid_stay(change: str) -> None:
    s, z = np.array(0.05, np.float32), np.array(128, np.uint8)
    model = {
        "scale": lambda: _chain(np.uint8, s, z, [4], out_scale=np.array(0.05001, np.float32)),
        "zero": lambda: _chain(np.uint8, s, z, [4], out_zero=np.array(127, np.uint8)),
        "subnormal scale": lambda: _chain(np.uint8, np.array(1e-40, np.float32), z, [4]),
        "per-channel": lambda: _chain(np.uint8, np.full(4, s), np.full(4, z), [4], axis=0),
        "second reader": lambda: _chain(np.uint8, s, z, [4]),
        "output": lambda: _chain(np.uint8, s, z, [4]),
    }[change]()
    if change == "second reader":
        model.graph.node.append(helper.make_node("Neg", ["x"], ["n"]))
        model.graph.output.append(helper.make_tensor_value_info("n", TensorProto.FLOAT, [4]))
    if change == "output":
        model.graph.output.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [4]))
    nodes = [n.op_type for n in model.graph.node]
    assert host.relu_chains_to_clip(model) == 0
    assert [n.op_type for n in model.graph.node] == nodes


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, np.ndarray]:
    """The example's Q/DQ model for jetson-orin and its validation images."""
    from edgeq.calibrate import calibrate

    if not (EXAMPLE / "model.onnx").is_file() or not (EXAMPLE / "images").is_dir():
        pytest.skip("the example model is trained by recipes/squeezenet-digits/train.py")
    recipe = recipe_module.load(EXAMPLE / "recipe.yaml")
    result = calibrate(recipe, targets.resolve("jetson-orin"), out=tmp_path_factory.mktemp("example"), progress=False)
    return onnx.load(result.artifacts.qdq_model), np.load(result.artifacts.validation)[recipe.inputs[0].name]


@pytest.mark.slow
def test_example_prediction_is_bit_identical_with_and_without_step_4(
        example: tuple[onnx.ModelProto, np.ndarray], int8_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host model as ONNX Runtime runs it (graph optimizations on), over the example's validation images."""
    from edgeq.calibrate import predict

    qdq, x = example
    rewritten = host.host_model(qdq, int8_path)
    clips = sum(n.op_type == "Clip" for n in onnx.ModelProto.FromString(rewritten.model).graph.node)
    monkeypatch.setattr(host, "relu_chains_to_clip", lambda model: 0)
    before = host.host_model(qdq, int8_path)
    assert clips == 25  # every Relu but the last (no pair after it), on either path
    assert rewritten.model != before.model and rewritten.kernels == before.kernels
    batches = list(predict.slices(x, 16))
    y_new, y_old = (next(iter(predict.outputs([m], batches)[0].values())) for m in (rewritten, before))
    assert y_new.dtype == np.float32 and y_new.shape == (len(x), 10)
    assert y_new.tobytes() == y_old.tobytes()
