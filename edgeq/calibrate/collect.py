"""Run the FP32 model over the calibration batches and stream every activation into its statistics.

Several lanes (threads) each take the next batch, run it through one ONNX Runtime session into arrays of
their own (:class:`edgeq.calibrate.activations.RecycledRun`), and hand the activations to a pool of worker
threads that fold them into the statistics in pieces of at most :data:`PIECE` values
(:func:`edgeq.calibrate.stats.piece_of`), which add up exactly in any order; while a lane waits for its fold,
the other lanes run. ONNX Runtime and numpy release the GIL. Each lane holds one run's activations, whatever
the number of samples.

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

Batch = np.ndarray | dict[str, np.ndarray]  # the first input's array, or every input by name
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
    """Folds activations into the histograms: a task takes about :data:`PIECE` values (a slice of a large tensor or
    several small tensors) and merges its pieces into the histograms itself (one lock per histogram)."""

    def __init__(self, histograms: list[StreamingHistogram], pool: Executor) -> None:
        self.histograms, self.pool = histograms, pool
        self.locks = {id(h): threading.Lock() for h in histograms}

    def _fold(self, pieces: list[tuple[StreamingHistogram, np.ndarray]]) -> None:
        for histogram, values in pieces:
            piece = piece_of(histogram.name, values, histogram.bins)
            with self.locks[id(histogram)]:
                histogram.merge(piece)

    def __call__(self, values: list[np.ndarray]) -> None:
        """Fold one run's ``values`` (one array per histogram) on the pool; returns when all of it is folded."""
        pending: list[Future[None]] = []
        task: list[tuple[StreamingHistogram, np.ndarray]] = []
        size = 0
        try:
            for histogram, array in zip(self.histograms, values, strict=True):
                flat = array.reshape(-1)
                for start in range(0, max(flat.size, 1), PIECE):
                    piece = flat[start : start + PIECE]
                    task.append((histogram, piece))
                    size += piece.size
                    if size >= PIECE:
                        pending.append(self.pool.submit(self._fold, task))
                        task, size = [], 0
            if task:
                pending.append(self.pool.submit(self._fold, task))
            for future in pending:
                future.result()
        finally:
            for future in pending:
                future.cancel()


class _Lanes:
    """Batches taken one at a time from a shared iterator by several threads; the first error stops every lane."""

    def __init__(self, batches: Iterable[Batch]) -> None:
        self.source = iter(batches)
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def next(self) -> Batch | None:
        with self.lock:
            return None if self.stopped.is_set() else next(self.source, None)

    def run(self, lane: Callable[[], None], count: int) -> None:
        """``lane`` on ``count`` threads (the calling thread alone when 1); raises the first lane's error."""

        def guarded() -> None:
            try:
                lane()
            except BaseException:
                self.stopped.set()
                raise

        if count == 1:
            guarded()
            return
        with ThreadPoolExecutor(count, thread_name_prefix="edgeq-lane") as pool:
            futures = [pool.submit(guarded) for _ in range(count)]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                self.stopped.set()
                raise


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
    batches: Iterable[Batch],
    *,
    bins: int = DEFAULT_BINS,
    plan: ThreadPlan | None = None,
    lanes: int | None = None,
    workers: Executor | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, TensorStats]:
    """Statistics of each of ``tensors`` over all ``batches`` (the first input's arrays, or every input by name).

    ``plan``: thread counts (default: for this machine); ``lanes``: concurrent runs (default: the plan's
    :attr:`ThreadPlan.statistics_lanes`); ``workers``: the pool that folds (default: one of
    ``plan.workers`` threads, for this call). ``advance`` is called from the lanes' threads.
    """
    plan = plan or ThreadPlan.for_machine()
    lanes = lanes or plan.statistics_lanes
    counting()  # measured once, here, before the workers keep the cores busy
    derived = derivations(model, tensors)
    direct = exposed_tensors(model, tensors)
    sess = activations.session(activations.with_outputs(model, direct), threads=plan.statistics_threads(lanes), portable=True)
    histograms = [StreamingHistogram(name, bins) for name in direct]
    shared = _Lanes(batches)
    with _pool(workers, plan) as pool:
        fold = _Fold(histograms, pool)

        def lane() -> None:
            run = activations.RecycledRun(sess, direct)  # each run writes into the arrays of the lane's run before
            while (x := shared.next()) is not None:
                fold(run(x))
                advance(activations.rows(x))

        shared.run(lane, lanes)
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
