"""The sensitivity proxy: INT8 noise-to-signal read off the statistics equals the noise measured directly, and
ranking measures only the layers the proxy puts first."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.calibrate.proxy import activation_noise, weight_noise
from edgeq.calibrate.qdq import weight_scales
from edgeq.calibrate.stats import StreamingHistogram


def _quantized(x: np.ndarray, amax: float) -> np.ndarray:
    scale = amax / 127.0
    return np.clip(np.round(x / scale), -127, 127) * scale


@pytest.mark.parametrize("amax", [4.0, 2.0, 1.0])  # no clipping, some, much
def test_activation_noise_matches_the_measured_quantization_noise(amax: float) -> None:
    x = np.random.default_rng(0).standard_normal(200_000).astype(np.float32)
    histogram = StreamingHistogram("x")
    histogram.update(x)
    measured = float(np.sum((x - _quantized(x, amax)) ** 2) / np.sum(x.astype(np.float64) ** 2))
    assert activation_noise(histogram.result(), amax) == pytest.approx(measured, rel=0.05)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_weight_noise_is_that_of_the_exported_int8_weights(axis: int) -> None:
    w = np.random.default_rng(1).standard_normal((8, 5, 3, 3)).astype(np.float32) * np.linspace(0.1, 3, 8)[:, None, None, None]
    scales = weight_scales(w, axis)
    shaped = scales if axis < 0 else scales.reshape([-1 if i == axis else 1 for i in range(4)])
    error = w - np.clip(np.round(w / shaped), -127, 127) * shaped
    assert weight_noise(w, axis) == pytest.approx(float(np.sum(error.astype(np.float64) ** 2) / np.sum(w.astype(np.float64) ** 2)))
    assert weight_noise(w, 0) < weight_noise(w, -1)  # per-channel scales fit channels of different size better


def test_ranking_measures_only_the_layers_the_proxy_puts_first() -> None:
    from edgeq.calibrate import activations
    from edgeq.calibrate.collect import collect
    from edgeq.calibrate.proxy import layer_proxies
    from edgeq.calibrate.qdq import plan_layers
    from edgeq.calibrate.ranges import compute_ranges
    from edgeq.calibrate.sensitivity import rank_layers
    from tests.calibrate_nets import fire_net, images, scores

    model = fire_net()
    x = images(np.random.default_rng(2), 16, 32)
    tensors = activations.activation_tensors(model)
    stats = collect(model, tensors, [x])
    amax = {name: r.amax for name, r in compute_ranges(stats, "minmax").items()}
    layers = plan_layers(model, tensors, {})
    proxies = layer_proxies(model, layers, stats, amax)
    assert len(proxies) == len(layers) >= 4 and all(value > 0 for value in proxies.values())
    from edgeq.calibrate.host import host_arithmetic

    reference = {model.graph.output[0].name: scores(model, x)}
    ranking = rank_layers(model, layers, amax, x, reference, 16, host_arithmetic().verdict, proxies=proxies, confirm=2)
    assert [entry.measured for entry in ranking] == [True, True] + [False] * (len(layers) - 2)
    top_two = sorted(proxies, key=proxies.get, reverse=True)[:2]
    assert {entry.layer for entry in ranking[:2]} == set(top_two)
    rest = [entry.proxy for entry in ranking[2:]]
    assert rest == sorted(rest, reverse=True) and ranking[0].score >= ranking[1].score > 0


def test_ranking_compares_every_output_on_its_own_batch_axis() -> None:
    """A layer that moves only the second output, whose samples are on axis 1, still ranks as sensitive."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeq.calibrate import activations
    from edgeq.calibrate.collect import collect
    from edgeq.calibrate.host import host_arithmetic
    from edgeq.calibrate.predict import outputs
    from edgeq.calibrate.qdq import plan_layers
    from edgeq.calibrate.ranges import compute_ranges
    from edgeq.calibrate.sensitivity import rank_layers

    rng = np.random.default_rng(4)
    weights = {"w1": rng.normal(size=(4, 3, 3, 3)), "w2": rng.normal(size=(4, 3, 3, 3))}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c1"], ["p1"], name="pool"),
        helper.make_node("Flatten", ["p1"], ["scores"], name="flat"),
        helper.make_node("Conv", ["x", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c2"], ["maps"], name="samples_second", perm=[1, 0, 2, 3]),
    ]
    graph = helper.make_graph(
        nodes, "two_outputs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("maps", TensorProto.FLOAT, [4, "N", 8, 8])],
        [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.normal(size=(24, 3, 8, 8)).astype(np.float32)
    tensors = activations.activation_tensors(model)
    amax = {name: r.amax for name, r in compute_ranges(collect(model, tensors, [x]), "minmax").items()}
    layers = plan_layers(model, tensors, {})
    axes = {"scores": 0, "maps": 1}
    reference = outputs([model], [x], axes)[0]  # all 24 samples; the ranking runs the first 8
    ranking = rank_layers(model, layers, amax, x[:8], reference, 8, host_arithmetic().verdict, output_axes=axes)
    scores = {entry.layer: entry.score for entry in ranking}
    assert set(scores) == {"conv1", "conv2"} and scores["conv2"] > 0 and scores["conv1"] > 0
