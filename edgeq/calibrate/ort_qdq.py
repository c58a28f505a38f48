"""Q/DQ placement for the ONNX Runtime backend (`local` and devices without TensorRT), from edgeq's ranges.

TensorRT wants Q/DQ only on the inputs of weighted layers and fuses the rest itself. ONNX Runtime's CPU
kernels run fast only where every op between two Q/DQ pairs is covered (QLinearConv with the ReLU folded
into a uint8 zero point of 0, uint8 MaxPool and Concat), and on x86 with uint8 activations. So for this
backend the model is quantized by ONNX Runtime's own QDQ quantizer (U8S8, per-channel weights), fed with
the ranges edgeq computed: the same calibration, placed for the kernels that will run it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgeq.calibrate.ranges import TensorRange

# Ops ONNX Runtime's QDQ quantizer places Q/DQ around and whose quantized kernels its CPU provider has.
ORT_OP_TYPES = (
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
    "Concat", "Add", "Mul", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Resize", "Sigmoid",
    "LeakyRelu", "Softmax",
)


def build_ort_qdq(model: onnx.ModelProto, ranges: dict[str, TensorRange], excluded: Iterable[str],
                  keep_float: Iterable[str] = ()) -> onnx.ModelProto:
    """``model`` quantized for ONNX Runtime with ``ranges``; ``excluded`` tensors and ``keep_float`` nodes stay float.

    Non-negative tensors (ReLU outputs) get the range [0, amax] (uint8 zero point 0, so the ReLU folds into
    the layer before it); the others [-amax, amax] (zero point 128, the symmetric grid).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantType
    from onnxruntime.quantization.calibrate import TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    skip = set(excluded)
    data = {
        name: TensorData(lowest=np.float32(0.0 if r.min >= 0 else -r.amax), highest=np.float32(r.amax))
        for name, r in ranges.items()
        if name not in skip and r.amax > 0
    }
    kept = set(keep_float)
    nodes_to_exclude = [n.name for n in model.graph.node if n.name in kept or any(t in skip for t in [*n.input, *n.output] if t)]
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    quantizer = QDQQuantizer(
        copy,
        True,  # per-channel weights
        False,  # no reduced range: VNNI has no overflow problem
        QuantType.QInt8,
        QuantType.QUInt8,
        TensorsData(CalibrationMethod.MinMax, data),
        [],
        nodes_to_exclude,
        list(ORT_OP_TYPES),
        {"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    quantizer.quantize_model()
    graph = gs.import_onnx(quantizer.model.model)
    graph.toposort()  # ONNX Runtime's quantizer appends its Q/DQ nodes at the end; onnx.checker wants them in order
    return gs.export_onnx(graph)
