"""What keeps the calibration's numbers the same on every x86 CPU: a float64 log, and graphs without the ONNX
Runtime kernels whose bits depend on the CPU.

- numpy's ``np.log`` takes an AVX-512 path on CPUs that have it and the C library elsewhere; the two differ in
  the last bit for some inputs, and a search whose candidates tie (the KL search ties often on sparse
  histograms) would then pick another range on another machine. :func:`log` uses only IEEE-754 operations
  that round exactly (frexp, +, -, x, /), in a fixed order, so it gives the same bits wherever numpy runs.
- ONNX Runtime's Softmax and LogSoftmax (MLAS) take AVX-512 kernels whose results differ from the AVX2 ones
  (rows of 37 or 256 values here; the ops a conv net, a detector and a transformer recogniser use were
  checked one by one at level EXTENDED under qemu's Haswell CPU, and only these two differed).
  :func:`without_cpu_dependent_ops` writes them as ReduceMax, Sub, Exp, ReduceSum and Div (Log), whose
  kernels gave the same bits on both.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.model import opset

LN2_HI = 6.93147180369123816490e-01  # ln 2 split as in fdlibm: e * LN2_HI is exact for |e| < 2**11
LN2_LO = 1.90821492927058770002e-10
SQRT_HALF = 0.70710678118654752440
# log(m) = 2 atanh(z) = 2 (z + z^3/3 + z^5/5 + ...), z = (m-1)/(m+1); |z| <= 0.1716 for m in [sqrt(1/2), sqrt(2)):
# 12 terms leave a truncation error below 1e-19 relative
_SERIES = tuple(1.0 / (2 * k + 1) for k in range(12))


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural log of float64 values, within 3 ulp of the exact value; log(0) = -inf, log(inf) = inf, NaN for x < 0."""
    x = np.asarray(x, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0, negative, inf and NaN inputs: replaced below
        return np.where(x > 0, np.where(np.isinf(x), np.inf, _log_positive(x)), np.where(x == 0, -np.inf, np.nan))


def _log_positive(x: np.ndarray) -> np.ndarray:
    mantissa, exponent = np.frexp(x)  # x = mantissa * 2**exponent, 0.5 <= mantissa < 1 (exact)
    low = mantissa < SQRT_HALF
    mantissa = np.where(low, mantissa * 2.0, mantissa)  # now in [sqrt(1/2), sqrt(2)) (exact)
    e = (exponent - low).astype(np.float64)
    z = (mantissa - 1.0) / (mantissa + 1.0)
    z2 = z * z
    series = np.full_like(z, _SERIES[-1])
    for coefficient in reversed(_SERIES[:-1]):
        series = series * z2 + coefficient
    return e * LN2_HI + (e * LN2_LO + 2.0 * z * series)


def without_cpu_dependent_ops(model: onnx.ModelProto, *, in_place: bool = False) -> onnx.ModelProto:
    """``model`` (a copy when anything changes, unless ``in_place``) with each Softmax and LogSoftmax of the main graph
    written out as
    ``e = Exp(x - ReduceMax(x))``, ``e / ReduceSum(e)`` (LogSoftmax: ``x - max - Log(ReduceSum(e))``), the same
    output names. Before opset 13 the ops normalise each row of x flattened at ``axis`` (the rows are made with
    Flatten and the result reshaped back to x's shape, so no rank needs to be known); from 13 over ``axis``."""
    version = opset(model)
    nodes: list[onnx.NodeProto] = []
    constants: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if node.op_type not in ("Softmax", "LogSoftmax"):
            nodes.append(node)
            continue
        x, y, stem = node.input[0], node.output[0], f"{node.output[0]}/portable"
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1 if version >= 13 else 1)
        rows, out = (x, y) if version >= 13 else (f"{stem}/rows", f"{stem}/normalised")
        if version < 13:
            nodes.append(helper.make_node("Flatten", [x], [rows], axis=axis))
            axis = 1
        axes_input = f"{stem}/axes"
        if version >= 13:  # ReduceSum takes its axes as an input from opset 13, ReduceMax from 18
            constants.append(numpy_helper.from_array(np.array([axis], np.int64), axes_input))
        nodes += [_reduce("ReduceMax", rows, f"{stem}/max", axis, axes_input if version >= 18 else None),
                  helper.make_node("Sub", [rows, f"{stem}/max"], [f"{stem}/shifted"]),
                  helper.make_node("Exp", [f"{stem}/shifted"], [f"{stem}/exp"]),
                  _reduce("ReduceSum", f"{stem}/exp", f"{stem}/sum", axis, axes_input if version >= 13 else None)]
        if node.op_type == "Softmax":
            nodes.append(helper.make_node("Div", [f"{stem}/exp", f"{stem}/sum"], [out], name=node.name))
        else:
            nodes += [helper.make_node("Log", [f"{stem}/sum"], [f"{stem}/log"]),
                      helper.make_node("Sub", [f"{stem}/shifted", f"{stem}/log"], [out], name=node.name)]
        if version < 13:
            nodes += [helper.make_node("Shape", [x], [f"{stem}/shape"]), helper.make_node("Reshape", [out, f"{stem}/shape"], [y])]
    if len(nodes) == len(model.graph.node):
        return model
    rewritten = model
    if not in_place:  # a copy of the whole model, initializers included
        rewritten = onnx.ModelProto()
        rewritten.CopyFrom(model)
    del rewritten.graph.node[:]
    rewritten.graph.node.extend(nodes)
    rewritten.graph.initializer.extend(constants)
    return rewritten


def _reduce(op: str, source: str, out: str, axis: int, axes_input: str | None) -> onnx.NodeProto:
    """A keepdims reduction over ``axis``: given as the input ``axes_input``, or as an attribute when that is None."""
    if axes_input is not None:
        return helper.make_node(op, [source, axes_input], [out], keepdims=1)
    return helper.make_node(op, [source], [out], axes=[axis], keepdims=1)
