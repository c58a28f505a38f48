"""The ONNX Runtime placement: edgeq's ranges, placed by ONNX Runtime's QDQ quantizer for its CPU kernels."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from edgeq.calibrate import predict
from edgeq.calibrate.host import ort_model
from edgeq.calibrate.ort_qdq import build_ort_qdq
from edgeq.calibrate.ranges import TensorRange
from edgeq.device.compare import cosine, top1_agreement
from tests.calibrate_nets import fire_net, images, scores


def _ranges(model: onnx.ModelProto, x: np.ndarray) -> dict[str, TensorRange]:
    """Min-max ranges of every float tensor on ``x`` (a plain, obviously right reference)."""
    names = [o for n in model.graph.node for o in n.output]
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"data": x}), strict=True))
    values["data"] = x
    return {n: TensorRange(n, float(np.abs(v).max()), float(v.min()), float(v.max())) for n, v in values.items()}


def _zero_points(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"}


def _built(quantized: onnx.ModelProto, arithmetic: str) -> ort.InferenceSession:
    """The placed model as the onnxruntime backend builds it on a CPU of ``arithmetic``."""
    return predict.session(ort_model(quantized, arithmetic))


def test_ort_placement_runs_close_to_fp32_with_uint8_activations(int8_path: str) -> None:
    model = fire_net()
    x = images(np.random.default_rng(1), 32, 32)
    quantized = build_ort_qdq(model, _ranges(model, x), excluded=[])
    onnx.checker.check_model(quantized)
    out = _built(quantized, int8_path).run(None, {"data": x})[0]
    reference = scores(model, x)
    assert cosine(reference, out) > 0.999 and top1_agreement(reference, out) >= 0.9
    zero_points = _zero_points(quantized)
    relu_outputs = [n.output[0] for n in model.graph.node if n.op_type == "Relu"]
    assert relu_outputs and all(zero_points[t].dtype == np.uint8 and zero_points[t] == 0 for t in relu_outputs)
    assert zero_points["data"] in (127, 128)  # a signed tensor: [-amax, amax] on uint8 puts zero mid-grid
    convs = [n for n in quantized.graph.node if n.op_type == "Conv"]
    assert all(n.input[0].endswith("DequantizeLinear_Output") for n in convs)


def test_excluded_tensors_and_kept_nodes_stay_float(int8_path: str) -> None:
    model = fire_net()
    x = images(np.random.default_rng(1), 16, 32)
    concat = next(n for n in model.graph.node if n.op_type == "Concat")
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
    quantized = build_ort_qdq(model, _ranges(model, x), excluded=[concat.output[0]], keep_float=[first_conv.name])
    quantized_tensors = set(_zero_points(quantized))
    assert concat.output[0] not in quantized_tensors
    assert first_conv.input[1] not in quantized_tensors  # its weight stays float
    assert cosine(scores(model, x), _built(quantized, int8_path).run(None, {"data": x})[0]) > 0.999
