"""The agent's sub-commands: each takes plain arguments, does its work in the work folder, returns a report."""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional

import numpy as np

from . import progress
from .backend import Backend, TensorSpec, select_backend
from .batches import Axes, batch_size, first, load_npz, pick_inputs, run_all, sample_count, stored_axes
from .compare import compare_outputs
from .errors import AgentError
from .probe import probe
from .report import (
    BenchReport,
    BuildOptions,
    BuildReport,
    Comparison,
    EvaluateReport,
    RunTiming,
    SmokeReport,
)
from .workdir import BUILD_JSON, Workdir, utc_now, write_json_atomic


class _Engine:
    """A built engine in the work folder, with the backend that built it (ready to load and run)."""

    def __init__(self, workdir: str, engine_id: str, threads: int) -> None:
        wd = Workdir.open(workdir)
        self.id = wd.resolve(engine_id)
        self.build = wd.load_build(self.id)
        self.folder = wd.engine_dir(self.id)
        self.backend: Backend = select_backend(self.build.backend, threads, probe)


def _require_file(path: Optional[str], what: str) -> None:
    if path is not None and not os.path.isfile(path):
        raise AgentError(AgentError.NOT_FOUND, f"{what} not found: {path}")


def build(workdir: str, engine_id: str, options: BuildOptions, backend_name: str, meta: Dict[str, Any]) -> BuildReport:
    wd = Workdir.open(workdir)
    wd.engine_dir(engine_id)
    _require_file(options.model, "--model")
    _require_file(options.qdq, "--qdq")
    _require_file(options.cache, "--cache")
    backend = select_backend(backend_name, options.threads, probe)
    start = time.perf_counter()
    with wd.staging(engine_id) as folder:
        result = backend.build(options, folder, wd.timing_cache)
        report = BuildReport(
            engine_id=engine_id,
            backend=backend.name,
            backend_version=result.backend_version,
            options=options,
            engine=result.engine,
            reference=result.reference,
            built_at=utc_now(),
            seconds=time.perf_counter() - start,
            inputs={s.name: list(s.shape) for s in result.inputs},
            timing_cache=result.timing_cache,
            meta=meta,
        )
        write_json_atomic(os.path.join(folder, BUILD_JSON), report.to_dict())
    return report


def evaluate(workdir: str, engine_id: str, data: str, batch: Optional[int], threads: int) -> EvaluateReport:
    start = time.perf_counter()
    engine = _Engine(workdir, engine_id, threads)
    engine_id, built, folder, backend = engine.id, engine.build, engine.folder, engine.backend
    int8 = backend.load(folder, built.engine)
    fp32 = backend.load(folder, built.reference)
    arrays = load_npz(data)
    inputs, axes = pick_inputs(arrays, int8.inputs), stored_axes(arrays)
    size = batch_size(int8.inputs, batch, axes)
    progress.expect(2 * sample_count(inputs))  # every sample through INT8, then FP32
    int8_out, int8_s = run_all(int8, inputs, size, axes)
    fp32_out, fp32_s = run_all(fp32, inputs, size, axes)
    for kind, outputs in (("int8", int8_out), ("fp32", fp32_out)):
        np.savez(os.path.join(folder, f"outputs.{kind}.npz"), **outputs)  # type: ignore[arg-type]  # numpy's stub: a ** dict may fill allow_pickle
    samples = sample_count(inputs)
    report = EvaluateReport(
        engine_id=engine_id,
        backend=backend.name,
        samples=samples,
        batch=size,
        int8=RunTiming(int8_s, int8_s * 1000.0 / samples),
        fp32=RunTiming(fp32_s, fp32_s * 1000.0 / samples),
        comparison=Comparison(**compare_outputs(first(fp32_out), first(int8_out))),
        scores_int8="outputs.int8.npz",
        scores_fp32="outputs.fp32.npz",
        seconds=time.perf_counter() - start,
    )
    write_json_atomic(os.path.join(folder, "evaluate.json"), report.to_dict())
    return report


def bench(
    workdir: str, engine_id: str, batch: int, warmup: int, iterations: int, threads: int, axes: Optional[Axes] = None
) -> BenchReport:
    """Latency of the engine and of its FP32 reference; ``axes``: each input's batch axis (batches.stored_axes)."""
    if batch < 1 or warmup < 0 or iterations < 1:
        raise AgentError(AgentError.INVALID_INPUT, "need --batch >= 1, --warmup >= 0, --iterations >= 1")
    start = time.perf_counter()
    engine = _Engine(workdir, engine_id, threads)
    engine_id, built, folder, backend = engine.id, engine.build, engine.folder, engine.backend
    specs = [TensorSpec(name, dims) for name, dims in built.inputs.items()]
    batch = batch_size(specs, batch, axes)
    shapes = {s.name: s.concrete(batch, built.options.shapes) for s in specs}
    progress.expect(2 * (warmup + iterations))  # INT8, then FP32
    int8 = backend.benchmark(folder, built.engine, batch, warmup, iterations, shapes)
    fp32 = backend.benchmark(folder, built.reference, batch, warmup, iterations, shapes)
    report = BenchReport(engine_id, backend.name, warmup, int8, fp32, speedup=fp32.median_ms / int8.median_ms,
                         seconds=time.perf_counter() - start)
    write_json_atomic(os.path.join(folder, "bench.json"), report.to_dict())
    return report


def smoke(workdir: str, engine_id: str, data: str, min_agreement: float, min_cosine: float, threads: int) -> SmokeReport:
    start = time.perf_counter()
    engine = _Engine(workdir, engine_id, threads)
    engine_id, backend = engine.id, engine.backend
    session = backend.load(engine.folder, engine.build.engine)
    arrays = load_npz(data)
    if "expected" not in arrays:
        raise AgentError(AgentError.INVALID_INPUT, "the smoke .npz needs an 'expected' array (the host's FP32 outputs)")
    inputs, axes = pick_inputs(arrays, session.inputs), stored_axes(arrays)
    outputs = first(run_all(session, inputs, batch_size(session.inputs, None, axes), axes)[0])
    expected = arrays["expected"]
    try:
        comparison = Comparison(**compare_outputs(expected, outputs.reshape(expected.shape)))
    except ValueError as exc:
        raise AgentError(AgentError.INVALID_INPUT, f"'expected' does not match the engine's output: {exc}") from exc
    passed = comparison.top1_agreement >= min_agreement and comparison.cosine >= min_cosine
    return SmokeReport(engine_id, backend.name, sample_count(inputs), comparison, min_agreement, min_cosine, passed,
                       seconds=time.perf_counter() - start)
