"""Ranges judged by the outputs: protected tensors, the method choice, the budget fit."""

from __future__ import annotations

from edgeq.calibrate import activations
from edgeq.calibrate.report import PredictedAccuracy
from edgeq.calibrate.selection import choose_method, protected_tensors
from edgeq.calibrate.sensitivity import _fewest, fit_budget
from tests.calibrate_nets import NetBuilder


def detector_head(seed: int = 0):
    """conv -> relu -> conv -> (sigmoid scores, raw boxes) -> Concat: a detection head in miniature."""
    b = NetBuilder(seed)
    trunk = b.conv("data", 3, 8, 3)
    logits = b.conv(trunk, 8, 4, 1, relu=False)
    class_scores = b.node("Sigmoid", [logits])
    boxes = b.conv(trunk, 8, 4, 1, relu=False)
    joined = b.node("Concat", [boxes, class_scores], axis=1)
    return b.model("data", joined, ["N", 3, 16, 16], ["N", 8, 16, 16]), trunk, logits, class_scores, boxes


def test_tensors_that_feed_an_output_through_value_passing_ops_are_protected() -> None:
    model, trunk, logits, class_scores, boxes = detector_head()
    tensors = activations.activation_tensors(model)
    protected = protected_tensors(model, tensors)
    assert protected[class_scores].startswith("feeds output") and "Concat" in protected[class_scores]
    assert protected[logits].startswith("feeds output") and "Sigmoid" in protected[logits]
    assert "Concat" in protected[boxes]
    assert trunk not in protected and "data" not in protected  # behind a Conv: interior


def _accuracy(int8: float, budget: float = 1.0) -> PredictedAccuracy:
    return PredictedAccuracy(metric="top1", samples=10, fp32=100.0, int8=int8, drop=100.0 - int8, top1_agreement=1.0, cosine={},
                             budget=budget, passed=100.0 - int8 <= budget)


def test_auto_keeps_entropy_when_it_loses_nothing_and_otherwise_the_best_candidate() -> None:
    tried: list[str] = []
    choice, acc = choose_method(_accuracy(100.0), lambda m: tried.append(m) or _accuracy(0.0))
    assert choice.method == "entropy" and tried == [] and acc.int8 == 100.0
    results = {"percentile": 90.0, "mse": 97.0, "minmax": 97.0}
    choice, acc = choose_method(_accuracy(50.0), lambda m: tried.append(m) or _accuracy(results[m]))
    assert tried == ["percentile", "mse", "minmax"] and choice.method == "mse" and acc.int8 == 97.0  # tie: the earlier
    assert choice.trials == {"entropy": 50.0, **results} and "mse lost the least" in choice.why


def test_auto_picks_the_smallest_drop_when_lower_is_better() -> None:
    def cer(int8: float) -> PredictedAccuracy:  # a character error rate: the drop is int8 - fp32
        return PredictedAccuracy(metric="cer", samples=10, fp32=0.5, int8=int8, drop=int8 - 0.5, top1_agreement=1.0,
                                 cosine={}, budget=2.0, passed=int8 - 0.5 <= 2.0)

    results = {"percentile": 1.42, "mse": 1.42, "minmax": 0.47}
    choice, acc = choose_method(cer(63.0), lambda m: cer(results[m]))
    assert choice.method == "minmax" and acc.int8 == 0.47  # the highest CER (entropy's 63 %) must never win


def test_fewest_doubles_then_bisects() -> None:
    calls: list[int] = []
    assert _fewest(100, lambda k: calls.append(k) or k >= 37) == 37
    assert calls[:7] == [1, 2, 4, 8, 16, 32, 64] and len(calls) <= 13
    assert _fewest(5, lambda k: False) is None and _fewest(0, lambda k: True) is None


def test_the_fit_widens_ranges_before_keeping_layers_and_says_when_it_cannot() -> None:
    # a drop that two widened ranges repair
    fit = fit_budget(["t1", "t2", "t3"], ["L1", "L2"], lambda w, k: _accuracy(99.5 if len(w) >= 2 else 50.0), _accuracy(50.0))
    assert fit.met and fit.widened == ["t1", "t2"] and fit.kept == [] and "widening 2 of 3" in fit.why
    # ranges cannot repair it; one layer in float (on top of every widened range) can
    fit = fit_budget(["t1"], ["L1", "L2"], lambda w, k: _accuracy(99.5 if k else 60.0), _accuracy(50.0))
    assert fit.met and fit.widened == ["t1"] and fit.kept == ["L1"]
    # widening loses accuracy here (60 -> 40): layers are kept on the chosen ranges, none widened
    fit = fit_budget(["t1", "t2"], ["L1", "L2"], lambda w, k: _accuracy((40.0 if w else 60.0) + (39.5 if k else 0.0)),
                     _accuracy(60.0))
    assert fit.met and fit.widened == [] and fit.kept == ["L1"] and "with the chosen ranges" in fit.why
    assert "lost more: drop 60.00" in fit.why
    # nothing repairs it: the fit says so, with the drop that remains
    fit = fit_budget(["t1"], ["L1"], lambda w, k: _accuracy(70.0), _accuracy(50.0))
    assert not fit.met and fit.why.startswith("cannot be met") and "30.00 points" in fit.why
    # only every layer in float would meet it: that is FP32, not a fit
    fit = fit_budget([], ["L1", "L2", "L3"], lambda w, k: _accuracy(99.5 if len(k) == 3 else 60.0), _accuracy(50.0))
    assert not fit.met and fit.kept == ["L1", "L2"] and "every layer in float would be the FP32 model" in fit.why
    assert all(trial["kept"] < 3 for trial in fit.trials)
    # the bound on trials ends it with the best trial so far, after exactly that many trials
    def evaluate(w: list[str], k: list[str]) -> PredictedAccuracy:
        return _accuracy(60.0 + 10.0 * len(k) + len(w))

    fit = fit_budget(["t1", "t2", "t3"], ["L1", "L2", "L3"], evaluate, _accuracy(50.0))  # unbounded: (3, 0), then (3, 2)
    assert not fit.met and len(fit.trials) == 2 and fit.kept == ["L1", "L2"] and fit.why.startswith("cannot be met")
    fit = fit_budget(["t1", "t2", "t3"], ["L1", "L2", "L3"], evaluate, _accuracy(50.0), bound=1)
    assert not fit.met and len(fit.trials) == 1 and fit.why.startswith("stopped at the bound of 1 trial(s)")
    assert fit.widened == ["t1", "t2", "t3"] and fit.kept == [] and "drop 37.00" in fit.why  # the best trial so far
    fit = fit_budget(["t1", "t2"], ["L1"], lambda w, k: _accuracy(60.0), _accuracy(50.0), bound=0)
    assert not fit.met and fit.trials == [] and fit.widened == [] and fit.kept == []
