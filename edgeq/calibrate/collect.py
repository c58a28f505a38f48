"""Run the FP32 model over the calibration batches and stream every activation into its statistics.

ONNX Runtime releases the GIL, and so do the numpy kernels of the histogram step: while ONNX Runtime
runs batch t+1 on the main thread, a worker thread folds batch t into the statistics. At most two
batches of activations are alive at any time, whatever the number of samples.

Outputs of Relu, Concat and ops that only move values are not run through a histogram of their
own: their statistics follow exactly from their inputs' (:func:`derivations`), which skips about
half of the work on a SqueezeNet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import onnx

from edgeq.calibrate import activations
from edgeq.calibrate.stats import DEFAULT_BINS, StreamingHistogram, TensorStats, concat_of, copy_of, relu_of

MOVE_OPS = frozenset({"Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Dropout"})


def derivations(model: onnx.ModelProto, tensors: list[str]) -> dict[str, tuple[str, list[str]]]:
    """Tensor -> (op, input tensors) for each of ``tensors`` whose statistics follow from other tensors'."""
    wanted = set(tensors)
    derived: dict[str, tuple[str, list[str]]] = {}
    for node in model.graph.node:
        if not node.output or node.output[0] not in wanted:
            continue
        if node.op_type in ("Relu", *MOVE_OPS) and node.input and node.input[0] in wanted:
            derived[node.output[0]] = (node.op_type, [node.input[0]])
        elif node.op_type == "Concat" and node.input and all(name in wanted for name in node.input):
            derived[node.output[0]] = ("Concat", list(node.input))
    return derived


def _fold(histograms: list[StreamingHistogram], values: list[np.ndarray]) -> None:
    for histogram, array in zip(histograms, values):
        histogram.update(array)


def collect(
    model: onnx.ModelProto,
    tensors: list[str],
    batches: Iterable[np.ndarray | dict[str, np.ndarray]],
    *,
    bins: int = DEFAULT_BINS,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, TensorStats]:
    """Statistics of each of ``tensors`` over all ``batches`` (the first input's arrays, or every input by name)."""
    derived = derivations(model, tensors)
    direct = [name for name in tensors if name not in derived]
    sess = activations.session(activations.with_outputs(model, direct), exposed=True)
    histograms = [StreamingHistogram(name, bins) for name in direct]
    pending: Future | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeq-stats") as worker:
        for x in batches:
            values = activations.run(sess, x, direct)
            if pending is not None:
                pending.result()
            pending = worker.submit(_fold, histograms, values)
            del values
            advance(activations.rows(x))
        if pending is not None:
            pending.result()
    by_name = {h.name: h for h in histograms}
    for name, (op, inputs) in derived.items():  # graph order: inputs come first
        sources = [by_name[i] for i in inputs]
        if op == "Relu":
            by_name[name] = relu_of(name, sources[0])
        elif op == "Concat":
            by_name[name] = concat_of(name, sources)
        else:
            by_name[name] = copy_of(name, sources[0])
    return {name: by_name[name].result() for name in tensors}
