"""Run the FP32 model over the calibration batches and stream every activation into its statistics.

ONNX Runtime releases the GIL, and so do the numpy kernels of the histogram step: while ONNX Runtime
runs batch t+1 on the main thread, a worker thread folds batch t into the statistics. At most two
batches of activations are alive at any time, whatever the number of samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import onnx

from edgeq.calibrate import activations
from edgeq.calibrate.stats import DEFAULT_BINS, StreamingHistogram, TensorStats


def _fold(histograms: list[StreamingHistogram], values: list[np.ndarray]) -> None:
    for histogram, array in zip(histograms, values):
        histogram.update(array)


def collect(
    model: onnx.ModelProto,
    tensors: list[str],
    batches: Iterable[np.ndarray],
    *,
    bins: int = DEFAULT_BINS,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, TensorStats]:
    """Statistics of each of ``tensors`` over all ``batches`` (input arrays of the model's first input)."""
    sess = activations.session(activations.with_outputs(model, tensors))
    histograms = [StreamingHistogram(name, bins) for name in tensors]
    pending: Future | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeq-stats") as worker:
        for x in batches:
            values = activations.run(sess, x, tensors)
            if pending is not None:
                pending.result()
            pending = worker.submit(_fold, histograms, values)
            del values
            advance(len(x))
        if pending is not None:
            pending.result()
    return {h.name: h.result() for h in histograms}
