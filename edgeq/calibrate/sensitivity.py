"""Per-layer sensitivity (on request only), and fitting the accuracy budget: widen ranges first, then keep layers in float.

Measuring a layer costs one Q/DQ model and one ONNX Runtime session, so the pipeline only ranks when
asked (``--sensitivity``, or ``--fit-budget`` when the budget fails); it runs on a small validation subset.
Given proxies (:mod:`edgeq.calibrate.proxy`, free from the statistics), only the ``confirm`` layers they rank
highest are measured; the others follow in proxy order, marked unmeasured.

The fit then tries, each trial one prediction of the recipe's metric on the validation data:

1. widening clipped ranges to min-max (a clipped range that feeds a layer is not undone by keeping the
   layer in float): the clipped tensors of the most sensitive layers first, then the rest by how much
   they clip;
2. keeping the most sensitive layers in float, on top of every widened range.

Each step first tries all of its tensors or layers (one trial tells whether the step can meet the
budget at all), then doubles from one until the budget holds and bisects back to the fewest that hold
it: O(log n) trials for n layers. The fit stops after :data:`FIT_TRIALS` trials, a count and not a time, so
that the fitted model is the same on a fast machine and on a slow one; the result says which step got how far
and why the budget was not met.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from edgeq.calibrate import activations, predict
from edgeq.calibrate.host import host_model
from edgeq.calibrate.qdq import QuantizedLayer, build_qdq
from edgeq.calibrate.report import LayerSensitivity, PredictedAccuracy
from edgeq.device.batches import NO_AXIS, first_samples
from edgeq.device.compare import cosine, top1_agreement

# The fit's trials together. Each step takes 1 + 2 log2(n) trials at most for n clipped ranges or layers, so this
# only cuts fits over more than about 100 of each; where it does, at the same trial on every machine.
FIT_TRIALS = 32


def rank_layers(
    model: onnx.ModelProto,
    layers: list[QuantizedLayer],
    amax: Mapping[str, float],
    x: np.ndarray | dict[str, np.ndarray],
    fp32: dict[str, np.ndarray],
    batch_size: int,
    arithmetic: str,
    advance: Callable[[], None] = lambda: None,
    *,
    proxies: Mapping[str, float] | None = None,
    confirm: int | None = None,
    output_axes: Mapping[str, int | None] | None = None,
) -> list[LayerSensitivity]:
    """Each layer quantized alone, scored by 1 - cosine against FP32 on the output it moves most; most sensitive first.

    ``fp32``: every FP32 output, whose first ``rows(x)`` samples along its batch axis in ``output_axes`` (default
    0; None: not per sample, compared whole) belong to ``x``; ``arithmetic``: this CPU's INT8 arithmetic
    (:func:`edgeq.calibrate.host.host_model`). ``proxies`` and ``confirm``: measure only the ``confirm`` layers of
    highest proxy (see the module docstring). Top-1 agreement is the first output's.
    """
    samples = activations.rows(x)
    axes = {name: (output_axes or {}).get(name, 0) for name in fp32}
    reference = {}
    for name, array in fp32.items():
        axis = axes[name]
        reference[name] = first_samples(array, NO_AXIS if axis is None else axis, samples)
    first = next(iter(fp32))
    proxies = proxies or {}
    if proxies and confirm is not None:
        by_proxy = sorted(layers, key=lambda layer: proxies.get(layer.name, 0.0), reverse=True)
        measured, rest = by_proxy[:confirm], by_proxy[confirm:]
    else:
        measured, rest = layers, []
    ranked = []
    for layer in measured:
        out = predict.outputs([host_model(build_qdq(model, [layer], amax), arithmetic)], predict.slices(x, batch_size), axes)[0]
        ranked.append(
            LayerSensitivity(
                layer=layer.name,
                op_type=layer.op_type,
                tensors=list(layer.activations),
                score=max(max(0.0, 1.0 - cosine(reference[name], out[name])) for name in reference),
                top1_agreement=top1_agreement(reference[first], out[first]),
                proxy=proxies.get(layer.name, 0.0),
            )
        )
        advance()
    unmeasured = [LayerSensitivity(layer=layer.name, op_type=layer.op_type, tensors=list(layer.activations), score=0.0,
                                   top1_agreement=1.0, proxy=proxies.get(layer.name, 0.0), measured=False) for layer in rest]
    return sorted(ranked, key=lambda s: s.score, reverse=True) + unmeasured


@dataclass
class FitResult:
    """What the fit changed, the accuracy then, and in words how it ended."""

    widened: list[str]
    kept: list[str]
    accuracy: PredictedAccuracy
    met: bool
    trials: list[dict[str, object]] = field(default_factory=list)
    why: str = ""


class _Bound(Exception):
    pass


def _fewest(count: int, passes: Callable[[int], bool]) -> int | None:
    """The smallest k in 1..count with passes(k), searching 1, 2, 4, ... then bisecting; None if passes(count) fails."""
    if count == 0:
        return None
    low, k = 0, 1
    while not passes(k):
        if k == count:
            return None
        low, k = k, min(2 * k, count)
    high = k
    while high - low > 1:
        middle = (low + high) // 2
        if passes(middle):
            high = middle
        else:
            low = middle
    return high


def fit_budget(
    clipped: Sequence[str],
    ranking: Sequence[str],
    evaluate: Callable[[list[str], list[str]], PredictedAccuracy],
    accuracy: PredictedAccuracy,
    bound: int = FIT_TRIALS,
    advance: Callable[[], None] = lambda: None,
) -> FitResult:
    """Widen the fewest of ``clipped`` (in order), then keep the fewest of ``ranking`` (layer names) in float,
    never all of them (that would be the FP32 model), in at most ``bound`` trials.

    ``evaluate(widened, kept)`` predicts the accuracy with those tensors at min-max and those layers in
    float; ``accuracy`` is the starting one.
    """
    trials: list[dict[str, object]] = []
    results: dict[tuple[int, int], PredictedAccuracy] = {(0, 0): accuracy}

    def run(widen: int, keep: int) -> PredictedAccuracy:
        if (widen, keep) not in results:
            if len(trials) >= bound:
                raise _Bound
            result = evaluate(list(clipped[:widen]), list(ranking[:keep]))
            results[(widen, keep)] = result
            trials.append({"widened": widen, "kept": keep, "int8": result.int8, "drop": result.drop, "passed": result.passed})
            advance()
        return results[(widen, keep)]

    def done(widen: int, keep: int, why: str) -> FitResult:
        final = results[(widen, keep)]
        return FitResult(list(clipped[:widen]), list(ranking[:keep]), final, final.passed, trials, why)

    if accuracy.passed:
        return done(0, 0, "the budget already holds")
    try:
        all_widened = len(clipped)
        if all_widened and run(all_widened, 0).passed:  # one trial says whether ranges alone can do it
            widen = _fewest(all_widened, lambda k: run(k, 0).passed)
            return done(widen or all_widened, 0, f"widening {widen} of {all_widened} clipped range(s) to min-max meets the budget")
        # layers are kept on top of the widened ranges, or of the chosen ones where widening them lost accuracy
        base = all_widened if all_widened and run(all_widened, 0).drop < accuracy.drop else 0
        ranges = f"with {base} range(s) widened" if base else "with the chosen ranges"
        if all_widened and not base:
            ranges += f" (widening all {all_widened} clipped range(s) to min-max lost more: drop {run(all_widened, 0).drop:.2f})"
        most = max(len(ranking) - 1, 0)  # every layer in float is the FP32 model, not a fit
        last = run(base, most)
        if last.passed:
            keep = _fewest(most, lambda k: run(base, k).passed)
            return done(base, keep or most, f"{ranges}, keeping {keep} of {len(ranking)} layer(s) in float meets the budget")
        why = (
            f"cannot be met in INT8: {ranges} and {most} of {len(ranking)} layer(s) in float the drop is still"
            f" {last.drop:.2f} points (budget {last.budget:.2f}); every layer in float would be the FP32 model. Relax"
            " budget.accuracy_drop, or validate on more samples when one sample moves the metric by more than the budget"
        )
        return done(base, most, why)
    except _Bound:
        best = min(results, key=lambda k: (not results[k].passed, results[k].drop, sum(k)))
        why = (
            f"stopped at the bound of {bound} trial(s); best: {best[0]} range(s) widened,"
            f" {best[1]} layer(s) in float, drop {results[best].drop:.2f} points"
        )
        return done(*best, why)
