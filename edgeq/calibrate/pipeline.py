"""`calibrate`: from a recipe and a target to validated INT8 artifacts, reused when nothing changed.

The work runs as named stages, each returning one result:

1. :func:`_open`: the recipe's model, data and metric, and the cache key; every input error is raised
   here, before anything is written (unless the artifacts are current: then they are reused).
2. :func:`_statistics`: the prepared FP32 model streamed over the calibration data, and the ranges
   (protected tensors at min-max whatever the method, :mod:`edgeq.calibrate.selection`); all of it target
   independent, so it is kept in the recipe's :mod:`edgeq.calibrate.store` and reused by every target.
3. :class:`_Placement`: which tensors and layers go to INT8, and the Q/DQ model for the target.
4. :func:`_validate`: FP32 and INT8 over the validation data, read once: predicted, compared and
   deflated into validation.npz as it goes; the FP32 side (its outputs, validation.npz) is kept in the store
   too, so another target or method runs only its INT8 model.
5. :func:`_choose_method` (method ``auto``): when entropy loses accuracy, the other methods are
   predicted too and the one the metric prefers wins.
6. :func:`_sensitivity` and :func:`_fit`: rank layers only when asked (``sensitivity``, or ``fit_budget``
   when the drop fails the budget); the fit widens clipped ranges, then keeps layers in float.
7. :func:`_report` and :func:`_write`: every artifact at once, through a staging folder.

Memory stays flat in the number of samples and bounded whatever the resolution: a statistics pass exposes
at most :data:`ACTIVATION_BUDGET` bytes of activations per sample, in several passes over the data when one
sample has more, and its runs as many samples as :data:`edgeq.calibrate.exposure.DEFAULT_RUN_BYTES` holds
(:mod:`edgeq.calibrate.exposure`); validation batches are sized by their input
(:data:`VALIDATION_BUDGET`), and nothing holds more than a few batches. Every model input is fed
(:class:`edgeq.feeds.Feeds`); the metric sees every output by name (:mod:`edgeq.metrics`). How the stages use the
cores is :class:`edgeq.calibrate.threads.ThreadPlan`'s business; the results do not depend on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from operator import itemgetter
from pathlib import Path

import numpy as np
import onnx
from rich.progress import Progress, TaskID

from edgeq import atomic
from edgeq import labels as labels_module
from edgeq import metrics as metrics_module
from edgeq import model as model_module
from edgeq.calibrate import activations, exposure, predict, selection
from edgeq.calibrate.cache import build_cache, constant_ranges, header_version
from edgeq.calibrate.collect import derivations
from edgeq.calibrate.host import HostModel, Int8Arithmetic, host_arithmetic, prediction_model
from edgeq.calibrate.manifest import cache_key, is_current, manifest, reference_key, statistics_key, validation_key
from edgeq.calibrate.ort_qdq import build_ort_qdq
from edgeq.calibrate.policy import excluded_tensors
from edgeq.calibrate.prepare import CHECK_SAMPLES, PreparedModel, prepare
from edgeq.calibrate.proxy import layer_proxies
from edgeq.calibrate.qdq import QuantizedLayer, build_qdq, plan_layers
from edgeq.calibrate.ranges import METHODS, TensorRange
from edgeq.calibrate.report import (
    Artifacts,
    CalibrationReport,
    CalibrationResult,
    LayerSensitivity,
    PredictedAccuracy,
    RangeSummary,
)
from edgeq.calibrate.sensitivity import FIT_TRIALS, FitResult, rank_layers
from edgeq.calibrate.sensitivity import fit_budget as fit_budget_layers
from edgeq.calibrate.stats import DEFAULT_BINS, TensorStats
from edgeq.calibrate.store import Measured, Store, Validated
from edgeq.calibrate.threads import ThreadPlan
from edgeq.data import check_same_classes
from edgeq.device.batches import CONSTANTS, axes_columns
from edgeq.errors import InputError
from edgeq.feeds import Feeds
from edgeq.metrics import Metric
from edgeq.npz import Column, write_npz
from edgeq.progress import progress as _progress
from edgeq.recipe import Recipe
from edgeq.targets import Target

SWITCH_INTERVAL = 1e-4  # s: numpy threads take the GIL back after every call; hand it over sooner than 5 ms
SENSITIVITY_SAMPLES = 32  # validation samples used to rank layers (ranking only; the metric uses all)
CONFIRMED_LAYERS = 4  # layers whose sensitivity is measured: those the proxy ranks highest
ACTIVATION_BUDGET = exposure.DEFAULT_BUDGET  # bytes of activations per sample one statistics pass exposes
VALIDATION_BUDGET = 1 << 20  # bytes of input per validation batch (each lane holds one batch, 10-20x that in activations)
LIVE_ACTIVATIONS = 2  # activations alive in a run, in units of its largest tensor: an operator's input and output


def default_folder(recipe: Recipe, target: Target) -> Path:
    """``<recipe folder>/edgeq-out/<recipe name>/<target>``: one folder per recipe and target."""
    return recipe.out_folder / target.name


def store_folder(recipe: Recipe) -> Path:
    """The recipe's :mod:`edgeq.calibrate.store`, beside its targets' folders."""
    return recipe.out_folder / ".store"


@dataclass
class _Pools:
    """Threads shared by the stages: numpy work (fold, ranges, compression) and image decoding."""

    plan: ThreadPlan
    workers: Executor
    decoders: Executor


@contextmanager
def _pools(plan: ThreadPlan) -> Iterator[_Pools]:
    """The pools, with a short GIL switch interval while they run (restored after)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        with ThreadPoolExecutor(plan.workers, thread_name_prefix="edgeq-worker") as workers, ThreadPoolExecutor(
            plan.decoders, thread_name_prefix="edgeq-decode"
        ) as decoders:
            yield _Pools(plan, workers, decoders)
    finally:
        sys.setswitchinterval(interval)


def _give_back_freed_memory() -> None:
    """Return freed heap memory to the system between stages (glibc keeps it, one arena per thread)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(None).malloc_trim(0)


@dataclass
class _Inputs:
    """Stage 1: what the run reads, checked."""

    recipe: Recipe
    target: Target
    method: str
    folder: Path
    artifacts: Artifacts
    model: onnx.ModelProto
    calibration: Feeds
    validation: Feeds
    labels: labels_module.LoadedLabels
    metric: Metric
    key: str
    store: Store  # the statistics, ranges and FP32 validation every target shares
    validation_key: str  # what validation reads besides the model (the store keeps its FP32 side by that and the model)
    arithmetic: Int8Arithmetic  # how this CPU's ONNX Runtime sums int8 products: picks the prediction's kernels


def _open(recipe: Recipe, target: Target, method: str | None, out: Path | None, settings: dict[str, bool | int | None]) -> _Inputs:
    method = method or recipe.calibration.method
    if method not in (selection.AUTO, *METHODS):
        raise InputError(f"--method: expected one of {selection.AUTO}, {', '.join(METHODS)}, found {method!r}")
    if not target.int8:
        raise InputError(f"target {target.name} ({target.module}) has no INT8 support; build it in FP16 instead")
    folder = Path(out) if out is not None else default_folder(recipe, target)
    model = model_module.load(recipe.model_path, infer_shapes=False)  # prepare() infers shapes, checked
    model_module.check_inputs(model, [spec.name for spec in recipe.inputs], recipe.source or recipe.model_path)
    calibration = Feeds(recipe, recipe.calibration, "calibration")
    validation = Feeds(recipe, recipe.validation, "validation")
    check_same_classes(calibration.dataset, validation.dataset)
    labels = labels_module.load(recipe, validation.dataset)
    metric = metrics_module.load(recipe, labels.labels)
    arithmetic = host_arithmetic()
    store = Store(store_folder(recipe), statistics_key(recipe, DEFAULT_BINS))
    checked = validation_key(recipe)
    key = cache_key(recipe, target, {"method": method, **settings, "int8_arithmetic": arithmetic.verdict}, store.key, checked)
    artifacts = Artifacts.in_folder(folder, with_cache=target.implicit_int8)
    return _Inputs(recipe, target, method, folder, artifacts, model, calibration, validation, labels, metric, key, store,
                   checked, arithmetic)


@dataclass
class _Statistics:
    """Stage 2: the prepared model, the tensors that get a range, and their ranges."""

    prepared: PreparedModel
    tensors: list[str]
    stats: dict[str, TensorStats]
    protected: dict[str, str]  # tensor -> why it keeps its full range
    ranges: dict[str, TensorRange]  # by the first method (``auto``: entropy)
    passes: exposure.ExposurePlan
    seconds: dict[str, float]  # prepare and statistics when measured; store when reused
    reused: bool  # from the store: no statistics pass ran
    notes: list[str] = field(default_factory=list)  # the store could not be written, and why

    @property
    def amax(self) -> dict[str, float]:
        return {name: r.amax for name, r in self.ranges.items()}


def _carry_state(inputs: _Inputs, prepared: PreparedModel, feeds: list[tuple[Feeds, int | None]]) -> None:
    """Fill the recurrent state inputs of ``feeds`` (each with its sequence length) from the FP32 model's outputs
    (portable kernels: the calibration statistics see these states)."""
    if not inputs.calibration.state:
        return
    session = activations.session(prepared.model, portable=True)
    names = [o.name for o in session.get_outputs()]

    def fp32_outputs(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, activations.run(session, feed, names), strict=True))

    for data, length in feeds:
        data.carry_state(fp32_outputs, length)


def _measure(inputs: _Inputs, pools: _Pools, bar: Progress) -> Measured:
    """The prepared model (each step checked on calibration samples) and its statistics over the calibration data."""
    tick = time.perf_counter()
    calibration = inputs.calibration
    prepared = prepare(inputs.model, source=str(inputs.recipe.model_path), feeds=[next(calibration.batches(CHECK_SAMPLES))],
                       state=calibration.state)
    _carry_state(inputs, prepared, [(calibration, inputs.recipe.calibration.sequence_length)])
    prepared_at = time.perf_counter()
    fp32 = prepared.model
    tensors = [t for t in activations.activation_tensors(fp32) if t not in prepared.unquantizable]
    shapes = {name: array.shape for name, array in next(calibration.batches(1)).items()}
    sources = {name: inputs for name, (_, inputs) in derivations(fp32, tensors).items()}
    passes = exposure.plan(exposure.tensor_bytes(fp32, tensors, shapes), ACTIVATION_BUDGET, sources=sources)
    task = bar.add_task("calibration statistics", total=len(calibration) * passes.passes)
    stats = exposure.collect_in_passes(fp32, passes, lambda rows: calibration.batches(rows, pools.decoders),
                                       plan=pools.plan, workers=pools.workers, advance=lambda n: bar.advance(task, n))
    seconds = {"prepare": prepared_at - tick, "statistics": time.perf_counter() - prepared_at}
    return Measured(prepared, tensors, stats, passes, seconds)


def _statistics(inputs: _Inputs, pools: _Pools, bar: Progress) -> _Statistics:
    """The store's entry for this model and calibration data, or a statistics run that makes it; then the ranges
    of the first method (``auto``: entropy), from the entry too when this method was asked for before."""
    tick = time.perf_counter()
    measured = inputs.store.load()
    reused = measured is not None
    notes = []
    if measured is None:
        measured = _measure(inputs, pools, bar)
        seconds = dict(measured.seconds)
        try:
            inputs.store.save(measured)
        except OSError as exc:  # a read-only recipe folder (calibrate --out elsewhere): this run does not need it
            notes.append(f"the calibration store {inputs.store.folder} could not be written ({exc.strerror or exc}): "
                         "other targets and commands measure the statistics again")
    else:
        seconds = {"store": time.perf_counter() - tick}
    _carry_state(inputs, measured.prepared, [(inputs.validation, inputs.recipe.validation.sequence_length)])
    fp32, stats, percentile = measured.prepared.model, measured.stats, inputs.recipe.calibration.percentile
    protected = selection.protected_tensors(fp32, measured.tensors)
    ranges = inputs.store.ranges(inputs.method, percentile)
    if ranges is None:
        auto = inputs.method == selection.AUTO
        why = f"auto starts from {selection.BASE_METHOD}" if auto else f"method {inputs.method} (as asked)"
        ranges = _ranges(stats, selection.BASE_METHOD if auto else inputs.method, percentile, protected, why, pools.workers)
        with contextlib.suppress(OSError):  # not kept: computed again next time (the note above says why)
            inputs.store.save_ranges(inputs.method, percentile, ranges)
    return _Statistics(measured.prepared, measured.tensors, stats, protected, ranges, measured.passes, seconds, reused,
                       notes)


def _ranges(
    stats: dict[str, TensorStats], method: str, percentile: float, protected: dict[str, str], why: str, workers: Executor
) -> dict[str, TensorRange]:
    """:func:`edgeq.calibrate.selection.base_ranges`, one tensor per task."""
    parts = workers.map(lambda item: selection.base_ranges(dict([item]), method, percentile, protected, why), stats.items())
    return {name: r for part in parts for name, r in part.items()}


@dataclass
class _Placement:
    """Stage 3: the tensors kept out of INT8 and the layers that can go to it, placed for the target."""

    fp32: onnx.ModelProto
    target: Target
    ranges: dict[str, TensorRange]
    excluded: dict[str, str]  # tensor -> why it stays in float
    layers: list[QuantizedLayer]
    arithmetic: str  # this CPU's INT8 arithmetic verdict

    @cached_property
    def fp32_bytes(self) -> bytes:
        return self.fp32.SerializeToString()

    @property
    def amax(self) -> dict[str, float]:
        return {name: r.amax for name, r in self.ranges.items()}

    @classmethod
    def plan(cls, statistics: _Statistics, target: Target, arithmetic: str, ranges: dict[str, TensorRange]) -> _Placement:
        fp32 = statistics.prepared.model
        excluded = {**statistics.prepared.unquantizable, **excluded_tensors(fp32, {n: r.amax for n, r in ranges.items()})}
        return cls(fp32, target, ranges, excluded, plan_layers(fp32, statistics.tensors, excluded), arithmetic)

    def model(self, chosen: list[QuantizedLayer]) -> onnx.ModelProto:
        """The Q/DQ model for the target's backend, with ``chosen`` layers in INT8."""
        if self.target.backend == "onnxruntime":
            # ONNX Runtime's quantizer also puts Q/DQ between layers (Relu, MaxPool, Concat outputs): a layer kept in
            # float keeps its input activations in float too, or the error the fit wants out would still reach it
            skipped = [layer for layer in self.layers if layer not in chosen]
            floats = {**self.excluded, **{t: "kept in float" for layer in skipped for t in layer.activations}}
            return build_ort_qdq(self.fp32, self.ranges, floats, keep_float=[layer.name for layer in skipped])
        return build_qdq(self.fp32, chosen, self.amax)

    def on_host(self, model: onnx.ModelProto) -> HostModel:
        """``model`` as the host runs it to predict accuracy (the reference numbers, the fastest kernels that keep them)."""
        return prediction_model(model, self.target.backend, self.arithmetic)


@dataclass
class _Validation:
    """Stage 4: FP32 reference outputs, the predicted accuracy of all layers in INT8, validation.npz."""

    reference: dict[str, np.ndarray]
    accuracy: PredictedAccuracy
    npz: Path
    rows: int  # samples per batch
    kernels: str  # which ONNX Runtime kernels ran the INT8 prediction
    seconds: float
    output_axes: dict[str, int | None]  # each output's batch axis: where its batches are joined
    reused: bool  # the FP32 side came from the store: only the INT8 model ran
    lanes: int  # concurrent runs over the validation data (ThreadPlan.lanes)


def _validation_rows(sample: dict[str, np.ndarray], constants: list[str]) -> int:
    """Samples per validation batch for samples like ``sample`` (one sample of every input, samples first), by the
    bytes of every input but the ``constants``."""
    return max(1, VALIDATION_BUDGET // max(sum(a[0].nbytes for name, a in sample.items() if name not in constants), 1))


def _run_bytes(fp32: onnx.ModelProto, sample: dict[str, np.ndarray], rows: int) -> int:
    """Activations one validation run of ``rows`` samples like ``sample`` holds: :data:`LIVE_ACTIVATIONS` x the
    FP32 model's largest activation (the INT8 model's are smaller)."""
    sizes = exposure.tensor_bytes(fp32, activations.activation_tensors(fp32), {name: a.shape for name, a in sample.items()})
    return rows * LIVE_ACTIVATIONS * max(sizes.values(), default=1)


def _validate(inputs: _Inputs, placement: _Placement, qdq: onnx.ModelProto, pools: _Pools, scratch: Path, bar: Progress) -> _Validation:
    """The FP32 and INT8 models over the validation data, validation.npz written as the batches stream by; the FP32
    side (reference outputs, validation.npz) from the store when this model and validation data were run before."""
    tick = time.perf_counter()
    validation, plan = inputs.validation, pools.plan
    predicted = placement.on_host(qdq)
    npz = scratch / "validation.npz"
    key = reference_key(inputs.validation_key, placement.fp32_bytes)
    stored = inputs.store.validation(key)
    task = bar.add_task("INT8 on validation data" if stored else "FP32 and INT8 on validation data", total=len(validation))

    def advanced(blocks: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        for x in blocks:
            bar.advance(task, activations.rows(x))
            yield x

    sample = next(validation.batches(1, samples_first=True))
    rows = stored.rows if stored is not None else _validation_rows(sample, validation.constants())
    lanes = plan.lanes(_run_bytes(placement.fp32, sample, rows))
    if stored is not None:
        shutil.copyfile(stored.npz, npz)
        int8 = _outputs(inputs, predicted, stored.rows, lanes, stored.output_axes, pools, lambda n: bar.advance(task, n))
        return _Validation(stored.reference, _judge(inputs, stored.reference, int8), npz, stored.rows, predicted.kernels,
                           time.perf_counter() - tick, stored.output_axes, reused=True, lanes=lanes)

    runner = predict.Runner([placement.fp32_bytes, predicted], threads=plan.validation_threads(lanes))
    fp32, names = runner.sessions[0], runner.names[0]
    axes = {**validation.axes, **validation.output_axes(lambda feed: dict(zip(names, activations.run(fp32, feed, names), strict=True)))}
    batches = validation.batches(rows, pools.decoders, ahead=lanes + 1)
    with npz.open("wb") as handle:
        fed = advanced(runner.feed_all(batches, lanes))
        write_npz(handle, _validation_columns(validation, inputs.labels, sample, fed, rows, axes), pools.workers)
    output_axes = {name: axes[name] for name in names}
    reference, int8 = runner.results(output_axes)
    with contextlib.suppress(OSError):  # not kept: the next target runs the FP32 side again
        inputs.store.save_validation(key, Validated(reference, npz, rows, output_axes))
    return _Validation(reference, _judge(inputs, reference, int8), npz, rows, predicted.kernels, time.perf_counter() - tick,
                       output_axes, reused=False, lanes=lanes)


def _judge(inputs: _Inputs, reference: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> PredictedAccuracy:
    return predict.compare(reference, out, inputs.labels.labels, inputs.metric, inputs.recipe.budget.accuracy_drop)


def _evaluate(
    inputs: _Inputs, placement: _Placement, validation: _Validation, pools: _Pools, chosen: list[QuantizedLayer]
) -> PredictedAccuracy:
    """The predicted accuracy of ``placement`` with ``chosen`` layers in INT8, on the whole validation data."""
    out = _outputs(inputs, placement.on_host(placement.model(chosen)), validation.rows, validation.lanes,
                   validation.output_axes, pools)
    return _judge(inputs, validation.reference, out)


def _outputs(
    inputs: _Inputs, model: HostModel, rows: int, lanes: int, axes: dict[str, int | None], pools: _Pools,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, np.ndarray]:
    """``model``'s outputs over the validation data, ``rows`` samples a batch on ``lanes``, joined on ``axes``."""
    runner = predict.Runner([model], threads=pools.plan.validation_threads(lanes))
    for x in runner.feed_all(inputs.validation.batches(rows, pools.decoders, ahead=lanes + 1), lanes):
        advance(activations.rows(x))
    return runner.results(axes)[0]


@dataclass
class _Choice:
    """Stage 5 (method ``auto``): the method the tensors that are not protected got, its placement and accuracy."""

    method: selection.MethodChoice
    placement: _Placement
    accuracy: PredictedAccuracy


def _choose_method(
    inputs: _Inputs, statistics: _Statistics, placement: _Placement, validation: _Validation, pools: _Pools, bar: Progress
) -> _Choice:
    """``auto``: keep entropy when it loses nothing, else predict every other method and keep the best."""
    if inputs.method != selection.AUTO:
        return _Choice(selection.MethodChoice(method=inputs.method, trials={}), placement, validation.accuracy)
    percentile = inputs.recipe.calibration.percentile
    placements = {selection.BASE_METHOD: placement}
    tasks: list[TaskID] = []  # the step shows only when entropy lost accuracy and the others are tried

    def trial(candidate: str) -> PredictedAccuracy:
        if not tasks:
            tasks.append(bar.add_task("range methods judged by the metric", total=len(selection.CANDIDATE_METHODS) - 1))
        ranges = _ranges(statistics.stats, candidate, percentile, statistics.protected, "candidate", pools.workers)
        placements[candidate] = _Placement.plan(statistics, inputs.target, placement.arithmetic, ranges)
        result = _evaluate(inputs, placements[candidate], validation, pools, placements[candidate].layers)
        bar.advance(tasks[0])
        return result

    choice, accuracy = selection.choose_method(validation.accuracy, trial)
    why = f"auto: {choice.why}"  # the chosen method's ranges, computed once: only the reason of those not protected changes
    ranges = {n: r if n in statistics.protected else replace(r, reason=why) for n, r in placements[choice.method].ranges.items()}
    return _Choice(choice, replace(placements[choice.method], ranges=ranges), accuracy)


def _sensitivity(
    inputs: _Inputs, statistics: _Statistics, placement: _Placement, validation: _Validation, bar: Progress
) -> list[LayerSensitivity]:
    """Layers ranked first by the free proxy; the :data:`CONFIRMED_LAYERS` it puts first are measured."""
    task = bar.add_task("layer sensitivity", total=min(len(placement.layers), CONFIRMED_LAYERS))
    feed = next(inputs.validation.batches(SENSITIVITY_SAMPLES))
    subset = feed if len(feed) > 1 else next(iter(feed.values()))
    proxies = layer_proxies(placement.fp32, placement.layers, statistics.stats, placement.amax)
    return rank_layers(
        placement.fp32, placement.layers, placement.amax, subset, validation.reference, validation.rows, placement.arithmetic,
        lambda: bar.advance(task), proxies=proxies, confirm=CONFIRMED_LAYERS, output_axes=validation.output_axes,
    )


@dataclass
class _Fit:
    """Stage 6b: the placement after the fit (ranges widened, layers kept in float), and how the fit went."""

    placement: _Placement
    result: FitResult | None  # None: no fit was asked for, or none was needed

    @property
    def kept(self) -> list[str]:
        return self.result.kept if self.result else []

    def layers(self) -> list[QuantizedLayer]:
        return [layer for layer in self.placement.layers if layer.name not in self.kept]


def _fit(
    inputs: _Inputs, statistics: _Statistics, choice: _Choice, validation: _Validation, ranking: list[LayerSensitivity],
    pools: _Pools, bar: Progress,
) -> _Fit:
    """Widen the fewest clipped ranges (the ranked layers' first, then by how much they clip), then keep the
    fewest ranked layers in float, until the budget holds or :data:`edgeq.calibrate.sensitivity.FIT_TRIALS` trials ran."""
    task = bar.add_task("fitting the accuracy budget", total=None)
    placement, stats = choice.placement, statistics.stats
    amax = placement.amax
    order = [t for entry in ranking for t in entry.tensors] + sorted(
        amax, key=lambda n: stats[n].absmax / max(amax[n], 1e-30), reverse=True
    )
    clipped = [t for t in dict.fromkeys(order) if t not in placement.excluded and amax[t] < stats[t].absmax]

    def widened(names: list[str]) -> _Placement:
        return replace(placement, ranges=selection.widened(placement.ranges, stats, names))

    def evaluate(widen: list[str], keep: list[str]) -> PredictedAccuracy:
        trial = widened(widen)
        return _evaluate(inputs, trial, validation, pools, [layer for layer in trial.layers if layer.name not in keep])

    result = fit_budget_layers(clipped, [entry.layer for entry in ranking], evaluate, choice.accuracy,
                               advance=lambda: bar.advance(task))
    return _Fit(widened(result.widened), result)


def _summary(ranges: dict[str, TensorRange], names: list[str]) -> RangeSummary:
    values = np.array([ranges[n].amax for n in names]) if names else np.zeros(1)
    clipped = sum(ranges[n].amax < max(-ranges[n].min, ranges[n].max) for n in names)
    return RangeSummary(tensors=len(names), amax_min=float(np.min(values)), amax_median=float(np.median(values)),
                        amax_max=float(np.max(values)), clipped=int(clipped))


@dataclass
class _Outcome:
    """Everything the report and the writer need besides the inputs."""

    statistics: _Statistics
    choice: _Choice
    validation: _Validation
    fit: _Fit
    ranking: list[LayerSensitivity]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def placement(self) -> _Placement:
        """The final placement: the chosen method's ranges, widened by the fit."""
        return self.fit.placement

    @property
    def accuracy(self) -> PredictedAccuracy:
        return self.fit.result.accuracy if self.fit.result else self.choice.accuracy

    @property
    def cached(self) -> list[str]:
        """The tensors written to the calibration cache: every activation in INT8."""
        kept = {t for layer in self.placement.layers if layer.name in self.fit.kept for t in layer.activations}
        return [t for t in self.statistics.tensors if t not in self.placement.excluded and t not in kept]


def _report(inputs: _Inputs, outcome: _Outcome) -> CalibrationReport:
    recipe, placement, fit = inputs.recipe, outcome.placement, outcome.fit.result
    notes = [*outcome.statistics.prepared.notes, *outcome.statistics.notes]
    if fit:
        notes.append(f"--fit-budget: {fit.why}")
    if not outcome.accuracy.passed and fit is None:
        notes.append(
            f"the budget fails: --fit-budget widens clipped ranges, then keeps the most sensitive of {len(placement.layers)}"
            f" layer(s) in float (at most {FIT_TRIALS} predictions); --sensitivity only ranks the layers"
        )
    unquantizable = outcome.statistics.prepared.unquantizable
    passes = outcome.statistics.passes
    return CalibrationReport(
        recipe=str(recipe.source),
        model=str(recipe.model_path),
        target=inputs.target.name,
        tensorrt=inputs.target.tensorrt,
        method=inputs.method,
        percentile=recipe.calibration.percentile,
        calibration_samples=len(inputs.calibration),
        key=inputs.key,
        statistics_key=inputs.store.key,
        validation_reused=outcome.validation.reused,
        statistics_reused=outcome.statistics.reused,
        created=datetime.now(timezone.utc).isoformat(),
        seconds={k: round(v, 3) for k, v in outcome.seconds.items()},
        ranges=_summary(placement.ranges, outcome.cached),
        quantized_layers=[layer.name for layer in outcome.fit.layers()],
        excluded={t: r for t, r in placement.excluded.items() if t in placement.ranges or t in unquantizable},
        kept_high_precision=outcome.fit.kept,
        widened=fit.widened if fit else [],
        fit=None if fit is None else {"met": fit.met, "why": fit.why, "trials": fit.trials},
        accuracy=outcome.accuracy,
        sensitivity=outcome.ranking,
        notes=notes,
        range_choice=outcome.choice.method,
        range_methods=selection.method_counts(placement.ranges, outcome.cached),
        classes=list(inputs.validation.dataset.classes or inputs.labels.class_names),
        preparation=outcome.statistics.prepared.steps,
        memory={"peak_rss_mb": round(exposure.peak_rss_mb(), 1), "statistics_passes": passes.passes,
                "exposed_mb_per_sample": round(sum(passes.sample_bytes) / 2**20, 1),
                "budget_mb": round(ACTIVATION_BUDGET / 2**20, 1), "rows_per_run": min(*passes.rows, len(inputs.calibration))},
        int8_arithmetic=inputs.arithmetic,
        prediction_kernels=outcome.validation.kernels,
    )


def calibrate(
    recipe: Recipe,
    target: Target,
    *,
    method: str | None = None,
    out: Path | None = None,
    fit_budget: bool | None = None,
    sensitivity: bool = False,
    threads: int | None = None,
    progress: bool = True,
) -> CalibrationResult:
    """Calibrate ``recipe``'s model for ``target``; see the module docstring. Raises InputError on bad input.

    ``fit_budget``: fit the budget when the drop misses it (None: the recipe's ``calibration.fit_budget``).
    ``sensitivity``: rank the layers even when the predicted drop fits the budget. ``threads``: ONNX
    Runtime threads to keep busy (default: one per core); the results are the same for any count.
    """
    started = time.perf_counter()
    fit_budget = recipe.calibration.fit_budget if fit_budget is None else fit_budget
    inputs = _open(recipe, target, method, out,  # the fit's bound decides where a long fit ends: a new bound, a new key
                   {"fit_budget": fit_budget, "fit_trials": FIT_TRIALS if fit_budget else None, "sensitivity": sensitivity})
    if is_current(inputs.folder, inputs.key):
        report = CalibrationReport.model_validate_json(inputs.artifacts.report.read_text())
        return CalibrationResult(folder=inputs.folder, artifacts=inputs.artifacts, report=report, reused=True)

    plan = ThreadPlan.for_machine(threads)
    with _progress(progress) as bar, _pools(plan) as pools, tempfile.TemporaryDirectory(prefix="edgeq-validation-") as scratch:
        statistics = _statistics(inputs, pools, bar)
        _give_back_freed_memory()
        placement = _Placement.plan(statistics, target, inputs.arithmetic.verdict, statistics.ranges)
        validation = _validate(inputs, placement, placement.model(placement.layers), pools, Path(scratch), bar)
        seconds = {**statistics.seconds, "validation": validation.seconds}
        tick = time.perf_counter()
        choice = _choose_method(inputs, statistics, placement, validation, pools, bar)
        if len(choice.method.trials) > 1:
            seconds["range_choice"] = time.perf_counter() - tick

        ranking: list[LayerSensitivity] = []
        failed = not choice.accuracy.passed
        if sensitivity or (fit_budget and failed):
            tick = time.perf_counter()
            ranking = _sensitivity(inputs, statistics, choice.placement, validation, bar)
            seconds["sensitivity"] = time.perf_counter() - tick
        fit = _Fit(choice.placement, None)
        if fit_budget and failed:
            tick = time.perf_counter()
            fit = _fit(inputs, statistics, choice, validation, ranking, pools, bar)
            seconds["fit_budget"] = time.perf_counter() - tick
        seconds["total"] = time.perf_counter() - started
        outcome = _Outcome(statistics, choice, validation, fit, ranking, seconds)
        report = _report(inputs, outcome)
        _write(inputs, outcome, report, fit.placement.model(fit.layers()), validation.npz)
    return CalibrationResult(folder=inputs.folder, artifacts=inputs.artifacts, report=report)


def _validation_columns(
    validation: Feeds, loaded: labels_module.LoadedLabels, sample: dict[str, np.ndarray], fed: Iterable[dict[str, np.ndarray]],
    rows: int, axes: dict[str, int | None],
) -> dict[str, Column]:
    """validation.npz's arrays: every input with samples first (the first from ``fed``, the batches predicted as
    they stream by; each like ``sample``), constant inputs whole, every input's and output's batch axis (``axes``),
    the labels and the class names."""
    first, *others = sample
    classes = np.array(validation.dataset.classes or loaded.class_names, dtype=np.str_)
    constants = validation.constants()
    extra = {**labels_module.columns(loaded.labels), "classes": classes, CONSTANTS: np.array(constants, dtype=np.str_),
             **axes_columns(axes)}
    columns = {first: Column(sample[first].dtype, (len(validation), *sample[first].shape[1:]), map(itemgetter(first), fed))}
    for name in others:
        if name in constants:
            columns[name] = Column(sample[name].dtype, sample[name].shape, [sample[name]])
        else:
            blocks = map(itemgetter(name), validation.batches(rows, samples_first=True))
            columns[name] = Column(sample[name].dtype, (len(validation), *sample[name].shape[1:]), blocks)
    return {**columns, **{name: Column(array.dtype, array.shape, [array]) for name, array in extra.items()}}


def _write(inputs: _Inputs, outcome: _Outcome, report: CalibrationReport, qdq: onnx.ModelProto, validation_npz: Path) -> None:
    """Write every artifact into a staging folder, then move them all into place."""
    target, ranges, excluded = inputs.target, outcome.placement.ranges, outcome.placement.excluded
    header = header_version(target.trt_version) if target.trt_version else None
    ranges_json = {
        "method": report.method,
        "percentile": report.percentile,
        "tensors": {
            name: {"amax": r.amax, "scale": r.scale, "min": r.min, "max": r.max, "method": r.method, "why": r.reason,
                   "excluded": excluded.get(name)}
            for name, r in ranges.items()
        },
    }
    with atomic.staged_dir(inputs.artifacts.folder) as stage:
        staged = Artifacts.in_folder(stage, with_cache=inputs.artifacts.cache is not None)
        atomic.write_bytes(staged.fp32_model, outcome.placement.fp32_bytes)
        atomic.write_bytes(staged.qdq_model, qdq.SerializeToString())
        if staged.cache is not None and target.trt_version is not None:
            constants = constant_ranges(outcome.placement.fp32, target.trt_version)  # cache-only entries
            amax = {**constants, **{name: ranges[name].amax for name in outcome.cached}}
            atomic.write_text(staged.cache, build_cache(amax, target.trt_version).to_text())
        atomic.write_json(staged.ranges, ranges_json)
        shutil.move(validation_npz, staged.validation)
        atomic.write_json(staged.report, report.model_dump(mode="json"))
        atomic.write_json(staged.manifest, manifest(inputs.key, target, staged.files(), header))
