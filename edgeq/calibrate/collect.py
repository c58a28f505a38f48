"""Run the FP32 model over the calibration batches and stream every activation into its statistics.

ONNX Runtime releases the GIL, and so do the numpy kernels of the histogram step: while ONNX Runtime
runs batch t+1 on the main thread (into the arrays of batch t-1: :class:`edgeq.calibrate.activations.RecycledRun`),
a pool of worker threads folds batch t into the statistics, in pieces of at most :data:`PIECE` values
(:func:`edgeq.calibrate.stats.piece_of`) that add up exactly in any order. Two batches of activations are
alive at any time, whatever the number of samples.

Outputs of Relu, Concat and ops that only move values are not run through a histogram of their
own: their statistics follow exactly from their inputs' (:func:`derivations`), which skips about
half of the work on a SqueezeNet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import onnx

from edgeq.calibrate import activations
from edgeq.calibrate.stats import (
    DEFAULT_BINS,
    StreamingHistogram,
    TensorStats,
    concat_of,
    copy_of,
    counting,
    piece_of,
    relu_of,
)
from edgeq.calibrate.threads import ThreadPlan

MOVE_OPS = frozenset({"Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Dropout"})
PIECE = 1 << 20  # values per fold task: enough work to amortise a task, small enough to spread a batch


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


def exposed_tensors(model: onnx.ModelProto, tensors: list[str]) -> list[str]:
    """The tensors :func:`collect` exposes as outputs: those of ``tensors`` not derived from others."""
    derived = derivations(model, tensors)
    return [name for name in tensors if name not in derived]


class _Fold:
    """Folds one batch of activations into the histograms on a pool while the caller runs the next one.

    A task takes about :data:`PIECE` values: a slice of a large tensor or several small tensors. Tasks
    merge their pieces into the histograms themselves (one lock per histogram), so the calling
    thread, which runs ONNX Runtime, only submits a few tasks per batch and waits for them.
    """

    def __init__(self, histograms: list[StreamingHistogram], pool: Executor) -> None:
        self.histograms, self.pool = histograms, pool
        self.locks = {id(h): threading.Lock() for h in histograms}
        self.pending: list[Future[None]] = []

    def _fold(self, pieces: list[tuple[StreamingHistogram, np.ndarray]]) -> None:
        for histogram, values in pieces:
            piece = piece_of(histogram.name, values, histogram.bins)
            with self.locks[id(histogram)]:
                histogram.merge(piece)

    def submit(self, values: list[np.ndarray]) -> None:
        task: list[tuple[StreamingHistogram, np.ndarray]] = []
        size = 0
        for histogram, array in zip(self.histograms, values, strict=True):
            flat = array.reshape(-1)
            for start in range(0, max(flat.size, 1), PIECE):
                piece = flat[start : start + PIECE]
                task.append((histogram, piece))
                size += piece.size
                if size >= PIECE:
                    self.pending.append(self.pool.submit(self._fold, task))
                    task, size = [], 0
        if task:
            self.pending.append(self.pool.submit(self._fold, task))

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        try:
            for future in pending:
                future.result()
        finally:
            for future in pending:
                future.cancel()

    def cancel(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pending = []


@contextmanager
def _pool(workers: Executor | None, plan: ThreadPlan) -> Iterator[Executor]:
    if workers is not None:
        yield workers
        return
    with ThreadPoolExecutor(plan.workers, thread_name_prefix="edgeq-fold") as pool:
        yield pool


def collect(
    model: onnx.ModelProto,
    tensors: list[str],
    batches: Iterable[np.ndarray | dict[str, np.ndarray]],
    *,
    bins: int = DEFAULT_BINS,
    plan: ThreadPlan | None = None,
    workers: Executor | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, TensorStats]:
    """Statistics of each of ``tensors`` over all ``batches`` (the first input's arrays, or every input by name).

    ``plan``: thread counts (default: for this machine); ``workers``: the pool that folds (default: one
    of ``plan.workers`` threads, for this call).
    """
    plan = plan or ThreadPlan.for_machine()
    counting()  # measured once, here, before the workers keep the cores busy
    derived = derivations(model, tensors)
    direct = exposed_tensors(model, tensors)
    sess = activations.session(activations.with_outputs(model, direct), threads=plan.collect_threads, portable=True)
    run = activations.RecycledRun(sess, direct)  # batch t+1 runs into batch t-1's arrays while batch t is folded
    histograms = [StreamingHistogram(name, bins) for name in direct]
    with _pool(workers, plan) as pool:
        fold = _Fold(histograms, pool)
        try:
            for x in batches:
                values = run(x)
                fold.wait()
                fold.submit(values)
                del values
                advance(activations.rows(x))
            fold.wait()
        except BaseException:
            fold.cancel()
            raise
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
