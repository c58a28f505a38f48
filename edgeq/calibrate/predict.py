"""Predicted INT8 accuracy: the FP32 model and the Q/DQ model on the validation data, side by side.

The Q/DQ model runs as :func:`edgeq.calibrate.host.prediction_model` makes it: the reference arithmetic
on this CPU, on the fastest ONNX Runtime kernels that keep it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import onnx
import onnxruntime as ort

from edgeq.calibrate import activations
from edgeq.calibrate.host import HostModel
from edgeq.calibrate.report import PredictedAccuracy
from edgeq.device.batches import NO_AXIS, join_batches
from edgeq.device.compare import cosine, top1_agreement
from edgeq.metrics import Labels, Metric

Batch = np.ndarray | dict[str, np.ndarray]  # the first input's array, or every input by name
B = TypeVar("B", bound=Batch)  # feed() and feed_all() hand back what they are given


def slices(x: Batch, rows: int) -> Iterator[Batch]:
    """``x`` in consecutive blocks of ``rows`` samples (a feed of every input by name stays whole)."""
    if isinstance(x, dict):
        return iter([x])
    return (x[start : start + rows] for start in range(0, len(x), rows))


Model = onnx.ModelProto | bytes | HostModel


def session(model: Model, threads: int = 0) -> ort.InferenceSession:
    """A portable CPU session for ``model`` (the predicted accuracy must not depend on the CPU), unless it is a
    HostModel that asks for ONNX Runtime's defaults (what a local engine runs)."""
    if isinstance(model, HostModel):
        return activations.session(model.model, threads=threads, portable=model.portable)
    return activations.session(model, threads=threads, portable=True)


class Runner:
    """Runs each input batch through every one of ``models`` and gathers their outputs.

    ``threads``: intra-op threads of each session (0: ONNX Runtime's default).
    """

    def __init__(self, models: list[Model], threads: int = 0) -> None:
        self.sessions = [session(model, threads) for model in models]
        self.names = [[o.name for o in sess.get_outputs()] for sess in self.sessions]
        self.parts: list[list[list[np.ndarray]]] = [[] for _ in self.sessions]

    def _run(self, x: Batch) -> list[list[np.ndarray]]:
        return [activations.run(sess, x, wanted) for sess, wanted in zip(self.sessions, self.names, strict=True)]

    def _keep(self, outputs: list[list[np.ndarray]]) -> None:
        for collected, out in zip(self.parts, outputs, strict=True):
            collected.append(out)

    def feed(self, x: B) -> B:
        """Run ``x`` through every model; returns ``x`` (so a stream of batches can pass through)."""
        self._keep(self._run(x))
        return x

    def feed_all(self, batches: Iterable[B], lanes: int = 1) -> Iterator[B]:
        """:meth:`feed` each batch, ``lanes`` batches at a time on as many threads; yields the batches in order."""
        if lanes <= 1:
            yield from map(self.feed, batches)
            return
        running: deque[tuple[B, Future[list[list[np.ndarray]]]]] = deque()
        with ThreadPoolExecutor(lanes, thread_name_prefix="edgeq-lane") as pool:
            try:
                for x in batches:
                    running.append((x, pool.submit(self._run, x)))
                    if len(running) > lanes:
                        x, done = running.popleft()
                        self._keep(done.result())
                        yield x
                while running:
                    x, done = running.popleft()
                    self._keep(done.result())
                    yield x
            finally:
                for _, future in running:
                    future.cancel()

    def results(self, axes: Mapping[str, int | None] | None = None) -> list[dict[str, np.ndarray]]:
        """Per model, each output over all batches fed so far, joined on its batch axis (``axes``: output name ->
        axis, None for an output without samples, kept from the first batch; default axis 0)."""
        at = {name: NO_AXIS if axis is None else axis for name, axis in (axes or {}).items()}
        return [
            {name: join_batches([p[i] for p in collected], at.get(name, 0)) for i, name in enumerate(wanted)}
            for wanted, collected in zip(self.names, self.parts, strict=True)
        ]


def outputs(
    models: list[Model], batches: Iterable[Batch], axes: Mapping[str, int | None] | None = None
) -> list[dict[str, np.ndarray]]:
    """All graph outputs of each of ``models`` over the input ``batches`` (joined on ``axes``, see :meth:`Runner.results`)."""
    runner = Runner(models)
    for x in batches:
        runner.feed(x)
    return runner.results(axes)


def compare(
    fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], labels: Labels, metric: Metric, budget: float
) -> PredictedAccuracy:
    """The metric on both (all named outputs), the points lost, top-1 agreement and per-output cosine similarity."""
    first = next(iter(fp32))
    scores = metric.compare(fp32, int8, labels)
    return PredictedAccuracy(
        metric=metric.name,
        samples=len(fp32[first]),
        fp32=scores.fp32,
        int8=scores.int8,
        drop=scores.drop,
        top1_agreement=top1_agreement(fp32[first], int8[first]),
        cosine={name: cosine(fp32[name], int8[name]) for name in fp32},
        budget=budget,
        passed=scores.drop <= budget,
        details=scores.details,
    )
