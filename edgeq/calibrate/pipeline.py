"""`calibrate`: from a recipe and a target to validated INT8 artifacts, reused when nothing changed.

Order of work: load and prepare the model, open the data and the metric (every input error is raised
here, before anything is written), stream activation statistics, compute ranges, apply the policy,
build the Q/DQ model, predict its accuracy against FP32, rank layer sensitivity when asked or when the
drop fails the budget, optionally fit the budget, then write every artifact at once through a staging
folder. ONNX Runtime runs are sized by bytes (:data:`ACTIVATION_BUDGET`), not by the recipe's batch size:
statistics expose at most that much per run, in several passes when one sample's activations are larger
(:mod:`edgeq.calibrate.exposure`); the validation set is streamed (read once: predicted by both models
and deflated into validation.npz as it goes), so memory stays flat in the number of samples.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from operator import itemgetter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from edgeq import atomic
from edgeq import labels as labels_module
from edgeq import metrics as metrics_module
from edgeq import model as model_module
from edgeq.calibrate import activations, predict
from edgeq.calibrate.cache import build_cache, constant_ranges, header_version
from edgeq.calibrate import exposure
from edgeq.calibrate.exposure import peak_rss_mb
from edgeq.calibrate.host import HostModel, host_arithmetic, prediction_model
from edgeq.calibrate.manifest import cache_key, is_current, manifest
from edgeq.npz import Column, write_npz
from edgeq.calibrate.policy import excluded_tensors
from edgeq.calibrate.prepare import CHECK_SAMPLES, prepare
from edgeq.calibrate.ort_qdq import build_ort_qdq
from edgeq.calibrate.qdq import QuantizedLayer, build_qdq, plan_layers
from edgeq.calibrate.ranges import METHODS, TensorRange, compute_ranges
from edgeq.calibrate.report import (
    Artifacts,
    CalibrationReport,
    CalibrationResult,
    LayerSensitivity,
    PredictedAccuracy,
    RangeSummary,
)
from edgeq.calibrate.sensitivity import fit_budget as fit_budget_layers
from edgeq.calibrate.proxy import layer_proxies
from edgeq.calibrate.sensitivity import rank_layers
from edgeq.calibrate.stats import DEFAULT_BINS
from edgeq.data import check_same_classes
from edgeq.feeds import CONSTANTS, Feeds
from edgeq.errors import InputError
from edgeq.recipe import Recipe
from edgeq.targets import Target

CONFIRMED_LAYERS = 4  # layers whose sensitivity is measured: those the proxy ranks highest
SENSITIVITY_SAMPLES = 32  # validation samples used to rank layers (ranking only; the metric uses all)
ACTIVATION_BUDGET = exposure.DEFAULT_BUDGET  # bytes of activations one ONNX Runtime run exposes (or holds)


def default_folder(recipe: Recipe, target: Target) -> Path:
    return recipe.folder / "edgeq-out" / target.name


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not enabled) as bar:
        yield bar


def _summary(ranges: dict[str, TensorRange], names: list[str]) -> RangeSummary:
    values = np.array([ranges[n].amax for n in names]) if names else np.zeros(1)
    clipped = sum(ranges[n].amax < max(-ranges[n].min, ranges[n].max) for n in names)
    return RangeSummary(len(names), float(values.min()), float(np.median(values)), float(values.max()), int(clipped))


def calibrate(
    recipe: Recipe,
    target: Target,
    *,
    method: str | None = None,
    out: Path | None = None,
    fit_budget: bool = False,
    sensitivity: bool = False,
    progress: bool = True,
) -> CalibrationResult:
    """Calibrate ``recipe``'s model for ``target``; see the module docstring. Raises InputError on bad input.

    ``sensitivity``: rank the layers even when the predicted drop fits the budget.
    """
    started = time.perf_counter()
    method = method or recipe.calibration.method
    if method not in METHODS:
        raise InputError(f"--method: expected one of {', '.join(METHODS)}, found {method!r}")
    if not target.int8:
        raise InputError(f"target {target.name} ({target.module}) has no INT8 support; build it in FP16 instead")
    folder = Path(out) if out is not None else default_folder(recipe, target)
    artifacts = Artifacts.in_folder(folder, with_cache=target.implicit_int8)

    original = model_module.load(recipe.model_path, infer_shapes=False)  # prepare() infers shapes, checked
    calibration = Feeds(recipe, recipe.calibration, "calibration")
    validation = Feeds(recipe, recipe.validation, "validation")
    check_same_classes(calibration.dataset, validation.dataset)
    loaded = labels_module.load(recipe, validation.dataset)
    metric = metrics_module.load(recipe, loaded.labels)
    arithmetic = host_arithmetic()  # how this CPU's ONNX Runtime sums int8 products: picks the prediction's kernels
    settings = {"method": method, "fit_budget": fit_budget, "sensitivity": sensitivity, "bins": DEFAULT_BINS,
                "int8_arithmetic": arithmetic.verdict}
    key = cache_key(recipe, target, settings)
    seconds: dict[str, float] = {}
    if is_current(folder, key):
        report = CalibrationReport.from_dict(json.loads(artifacts.report.read_text()))
        return CalibrationResult(folder=folder, artifacts=artifacts, report=report, reused=True)

    tick = time.perf_counter()
    prepared = prepare(original, source=str(recipe.model_path), feeds=[next(calibration.batches(CHECK_SAMPLES))],
                       state=calibration.state)
    fp32 = prepared.model
    if calibration.state:  # recurrent state: FP32's own, carried along each sequence
        state_session = activations.session(fp32)
        names = [o.name for o in state_session.get_outputs()]

        def fp32_outputs(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(names, activations.run(state_session, feed, names)))

        calibration.carry_state(fp32_outputs, recipe.calibration.sequence_length)
        validation.carry_state(fp32_outputs, recipe.validation.sequence_length)
    seconds["prepare"] = time.perf_counter() - tick
    every = activations.activation_tensors(fp32)
    tensors = [t for t in every if t not in prepared.unquantizable]
    sizes = exposure.tensor_bytes(fp32, every, {name: a.shape for name, a in next(calibration.batches(1)).items()})
    passes = exposure.plan({name: sizes[name] for name in tensors}, ACTIVATION_BUDGET)
    batch_size = max(1, ACTIVATION_BUDGET // max(sum(sizes.values()), 1))  # runs that expose nothing: bounded alike
    with _progress(progress) as bar, tempfile.TemporaryDirectory(prefix="edgeq-validation-") as scratch:
        tick = time.perf_counter()
        task = bar.add_task("calibration statistics", total=len(calibration) * passes.passes)
        stats = exposure.collect_in_passes(fp32, passes, calibration.batches, advance=lambda n: bar.advance(task, n))
        ranges = compute_ranges(stats, method, recipe.calibration.percentile)
        amax = {name: r.amax for name, r in ranges.items()}
        seconds["statistics"] = time.perf_counter() - tick

        excluded = {**prepared.unquantizable, **excluded_tensors(fp32, amax)}
        layers = plan_layers(fp32, tensors, excluded)

        tick = time.perf_counter()
        task = bar.add_task("FP32 and INT8 on validation data", total=1)
        labels = loaded.labels

        def val_batches() -> Iterator[dict[str, np.ndarray]]:
            return validation.batches(batch_size)

        fp32_bytes = fp32.SerializeToString()

        def placed(chosen: list[QuantizedLayer]) -> onnx.ModelProto:
            """The Q/DQ model for the target's backend, with ``chosen`` layers in INT8."""
            if target.backend == "onnxruntime":
                skipped = [layer.name for layer in layers if layer not in chosen]
                return build_ort_qdq(fp32, ranges, excluded, keep_float=skipped)
            return build_qdq(fp32, chosen, amax)

        def on_host(model: onnx.ModelProto) -> HostModel:
            """The placed model as the host runs it to predict accuracy (same numbers, faster kernels)."""
            return prediction_model(model, target.backend, arithmetic.verdict)

        qdq_model = placed(layers)
        predicted = on_host(qdq_model)
        runner = predict.Runner([fp32_bytes, predicted])
        validation_npz = Path(scratch) / "validation.npz"
        with validation_npz.open("wb") as handle:  # one read of the validation set: predicted and stored
            write_npz(handle, _validation_columns(validation, loaded, map(runner.feed, val_batches()), batch_size))
        reference, int8 = runner.results()

        def judge(out: dict[str, np.ndarray]) -> PredictedAccuracy:
            return predict.compare(reference, out, labels, metric, recipe.budget.accuracy_drop)

        def evaluate(chosen: list[QuantizedLayer]) -> PredictedAccuracy:
            return judge(predict.outputs([on_host(placed(chosen))], val_batches())[0])

        accuracy = judge(int8)
        bar.advance(task)
        seconds["validation"] = time.perf_counter() - tick

        ranking: list[LayerSensitivity] = []
        if sensitivity or not accuracy.passed:
            tick = time.perf_counter()
            task = bar.add_task("layer sensitivity", total=min(len(layers), CONFIRMED_LAYERS))
            subset = next(validation.batches(SENSITIVITY_SAMPLES))
            subset = subset if len(subset) > 1 else next(iter(subset.values()))
            proxies = layer_proxies(fp32, layers, stats, amax)
            ranking = rank_layers(fp32, layers, amax, subset, reference, batch_size, arithmetic.verdict,
                                  lambda: bar.advance(task), proxies=proxies, confirm=CONFIRMED_LAYERS)
            seconds["sensitivity"] = time.perf_counter() - tick

        kept: list[str] = []
        if fit_budget and not accuracy.passed:
            tick = time.perf_counter()
            task = bar.add_task("fitting the accuracy budget", total=len(ranking))
            kept, accuracy = fit_budget_layers(layers, ranking, evaluate, accuracy, lambda: bar.advance(task))
            seconds["fit_budget"] = time.perf_counter() - tick

        final_layers = [layer for layer in layers if layer.name not in kept]
        kept_tensors = {t for layer in layers if layer.name in kept for t in layer.activations}
        if kept:
            qdq_model = placed(final_layers)
        cached = [t for t in tensors if t not in excluded and t not in kept_tensors]
        seconds["total"] = time.perf_counter() - started

        notes = list(prepared.notes)
        if kept:
            notes.append(f"kept {len(kept)} layer(s) in float to fit the budget: {', '.join(kept)}")
        report = CalibrationReport(
            recipe=str(recipe.source),
            model=str(recipe.model_path),
            target=target.name,
            tensorrt=target.tensorrt,
            method=method,
            percentile=recipe.calibration.percentile,
            calibration_samples=len(calibration),
            key=key,
            created=datetime.now(timezone.utc).isoformat(),
            seconds={k: round(v, 3) for k, v in seconds.items()},
            ranges=_summary(ranges, cached),
            quantized_layers=[layer.name for layer in final_layers],
            excluded={t: r for t, r in excluded.items() if t in ranges or t in prepared.unquantizable},
            kept_high_precision=kept,
            accuracy=accuracy,
            sensitivity=ranking,
            notes=notes,
            preparation=[asdict(step) for step in prepared.steps],
            memory={"peak_rss_mb": round(peak_rss_mb(), 1), "statistics_passes": passes.passes,
                    "exposed_mb_per_sample": round(sum(passes.sample_bytes) / 2**20, 1),
                    "budget_mb": round(ACTIVATION_BUDGET / 2**20, 1), "rows_per_run": min(passes.rows)},
            int8_arithmetic=arithmetic,
            prediction_kernels=predicted.kernels,
        )
        _write(artifacts, target, key, report, fp32_bytes, qdq_model, ranges, cached, excluded, validation_npz,
               constant_ranges(fp32, target.trt_version) if target.trt_version else {})
    return CalibrationResult(folder=folder, artifacts=artifacts, report=report)


def _validation_columns(
    validation: Feeds, loaded: labels_module.LoadedLabels, fed: Iterable[dict[str, np.ndarray]], batch_size: int
) -> dict[str, Column]:
    """validation.npz's arrays: every input with samples first (the first from ``fed``, the batches predicted
    as they stream by), constant inputs whole, the labels and the class names."""
    sample = next(validation.batches(1, samples_first=True))
    first, *others = sample
    classes = np.array(validation.dataset.classes or loaded.class_names, dtype=np.str_)
    constants = validation.constants()
    extra = {**labels_module.columns(loaded.labels), "classes": classes, CONSTANTS: np.array(constants, dtype=np.str_)}
    columns = {first: Column(sample[first].dtype, (len(validation), *sample[first].shape[1:]), (feed[first] for feed in fed))}
    for name in others:
        if name in constants:
            columns[name] = Column(sample[name].dtype, sample[name].shape, [sample[name]])
        else:
            blocks = map(itemgetter(name), validation.batches(batch_size, samples_first=True))
            columns[name] = Column(sample[name].dtype, (len(validation), *sample[name].shape[1:]), blocks)
    return {**columns, **{name: Column(array.dtype, array.shape, [array]) for name, array in extra.items()}}


def _write(
    artifacts: Artifacts,
    target: Target,
    key: str,
    report: CalibrationReport,
    fp32_bytes: bytes,
    qdq_model: onnx.ModelProto,
    ranges: dict[str, TensorRange],
    cached: list[str],
    excluded: dict[str, str],
    validation_npz: Path,
    constants: dict[str, float],
) -> None:
    """Write every artifact into a staging folder, then move them all into place (constants: cache-only entries)."""
    header = header_version(target.trt_version) if target.trt_version else None
    ranges_json = {
        "method": report.method,
        "percentile": report.percentile,
        "tensors": {
            name: {"amax": r.amax, "scale": r.scale, "min": r.min, "max": r.max, "excluded": excluded.get(name)}
            for name, r in ranges.items()
        },
    }
    with atomic.staged_dir(artifacts.folder) as stage:
        staged = Artifacts.in_folder(stage, with_cache=artifacts.cache is not None)
        atomic.write_bytes(staged.fp32_model, fp32_bytes)
        atomic.write_bytes(staged.qdq_model, qdq_model.SerializeToString())
        if staged.cache is not None and target.trt_version is not None:
            amax = {**constants, **{name: ranges[name].amax for name in cached}}
            atomic.write_text(staged.cache, build_cache(amax, target.trt_version).to_text())
        atomic.write_json(staged.ranges, ranges_json)
        shutil.copyfile(validation_npz, staged.validation)
        atomic.write_json(staged.report, report.to_dict())
        atomic.write_json(staged.manifest, manifest(key, target, staged.files(), header))
