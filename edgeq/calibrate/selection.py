"""Per-tensor range choice judged by the model's outputs (method ``auto``, the default).

1. **Protected tensors get their full range (min-max), whatever the method.** A tensor from which a graph
   output is reached only through ops that pass its values on (element-wise, monotone or layout:
   Sigmoid, Softmax, Concat, Reshape, Add of a constant, ...) carries exactly what the task decodes,
   scores, boxes, logits: clipping it clips the output (YOLOv8n's sigmoid class scores got amax 0.084
   from entropy and kept none of 37 detections). Outputs of bounded activations (Sigmoid, Softmax,
   HardSigmoid, Tanh: |x| <= 1) are protected too: their full range costs at most a 1/127 step, and a
   clipped gate or probability saturates.
2. **The other tensors' method is judged by the recipe's metric** (``auto``): entropy first; when it
   loses accuracy against FP32 on the validation data, each other method (percentile, MSE, min-max)
   is predicted too and the one that keeps the most wins (:func:`choose_method`). A metric-free output
   error did not do: on YOLOv8n the relative output error ranked min-max worst (noise in the many
   near-zero scores) while min-max was the only method keeping 90 % of the detections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

import onnx

from edgeq.calibrate.ranges import TensorRange, compute_ranges
from edgeq.calibrate.report import MethodChoice, PredictedAccuracy
from edgeq.calibrate.stats import TensorStats
from edgeq.graph import GraphIndex

AUTO = "auto"
BASE_METHOD = "entropy"  # what ``auto`` starts from

# Ops whose output carries its (non-constant) inputs' values on: element-wise monotone maps and layout ops.
PASS_ON = frozenset({
    "Sigmoid", "Softmax", "LogSoftmax", "HardSigmoid", "Tanh", "Relu", "LeakyRelu", "Clip", "Exp", "Log", "Softplus",
    "Concat", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Slice", "Split", "Cast",
    "Add", "Sub", "Mul", "Div", "Neg", "Abs", "MaxPool", "Resize",
})
SCALING_OPS = frozenset({"Mul", "Div"})  # pass values on only when the other operand is not calibrated
BOUNDED_OPS = frozenset({"Sigmoid", "Softmax", "HardSigmoid", "Tanh"})
CANDIDATE_METHODS = ("entropy", "percentile", "mse", "minmax")


def protected_tensors(model: onnx.ModelProto, tensors: Iterable[str]) -> dict[str, str]:
    """Tensor -> why it needs its full range: it reaches a graph output through value-passing ops, or is bounded."""
    wanted = set(tensors)
    index = GraphIndex(model)
    found: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type in BOUNDED_OPS and node.output[0] in wanted:
            found[node.output[0]] = (
                f"bounded output of {node.op_type} '{node.name}' (|x| <= 1): the full range costs at most a 1/127 step,"
                " a clipped probability or gate saturates"
            )
    frontier: list[tuple[str, str, list[str]]] = [(name, name, []) for name in index.outputs]
    seen: set[str] = set()
    while frontier:
        name, output, path = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in wanted:
            via = f" through {' -> '.join(reversed(path))}" if path else ""
            found[name] = f"feeds output '{output}'{via}: clipping it clips what the task decodes (scores, boxes, logits)"
        source = index.producer(name)
        if source is None or source.op_type not in PASS_ON:
            continue
        inputs = [i for i in source.input if i in wanted]
        if source.op_type in SCALING_OPS and len(inputs) > 1:
            continue  # a product of two activations does not carry either one's range
        if source.op_type in ("Reshape", "Slice", "Resize", "Clip", "Split") and source.input:
            inputs = [i for i in inputs if i == source.input[0]]
        for tensor in inputs:
            frontier.append((tensor, output, [*path, source.op_type]))
    return found


def base_ranges(
    stats: Mapping[str, TensorStats], method: str, percentile: float, protected: Mapping[str, str], why: str
) -> dict[str, TensorRange]:
    """``method``'s range (because ``why``) for every tensor, min-max for the protected ones, each with its reason."""
    ranges = compute_ranges({n: s for n, s in stats.items() if n not in protected}, method, percentile, why)
    full = compute_ranges({n: s for n, s in stats.items() if n in protected}, "minmax")
    return {**ranges, **{name: replace(r, reason=protected[name]) for name, r in full.items()}}


def choose_method(first: PredictedAccuracy, trial: Callable[[str], PredictedAccuracy]) -> tuple[MethodChoice, PredictedAccuracy]:
    """``auto``: keep :data:`BASE_METHOD` when it loses nothing, else the candidate that loses the least (the
    smallest drop: the best INT8 metric whether higher or lower is better).

    ``first`` is the base method's predicted accuracy; ``trial(method)`` predicts another's. Ties go to
    the earlier candidate in :data:`CANDIDATE_METHODS`.
    """
    trials = {BASE_METHOD: first.int8}
    results = {BASE_METHOD: first}
    if first.drop <= 0:
        why = f"{BASE_METHOD} loses nothing against FP32 ({first.metric} {first.int8:.2f})"
        return MethodChoice(method=BASE_METHOD, trials=trials, why=why), first
    for method in CANDIDATE_METHODS:
        if method not in results:
            results[method] = trial(method)
            trials[method] = results[method].int8
    best = min(CANDIDATE_METHODS, key=lambda m: (results[m].drop, CANDIDATE_METHODS.index(m)))  # drop: lower is better either way
    shown = ", ".join(f"{m} {v:.2f}" for m, v in trials.items())
    why = f"{BASE_METHOD} dropped {first.drop:.2f} points; {first.metric} in INT8 by method: {shown}; {best} lost the least"
    return MethodChoice(method=best, trials=trials, why=why), results[best]


def method_counts(ranges: Mapping[str, TensorRange], names: Iterable[str]) -> dict[str, dict[str, object]]:
    """Per method: how many of ``names`` got it, and up to five of them with why."""
    by_method: dict[str, list[str]] = {}
    for name in names:
        by_method.setdefault(ranges[name].method, []).append(name)
    return {method: {"tensors": len(got), "examples": {name: ranges[name].reason for name in got[:5]}}
            for method, got in by_method.items()}


def widened(ranges: Mapping[str, TensorRange], stats: Mapping[str, TensorStats], names: Iterable[str]) -> dict[str, TensorRange]:
    """``ranges`` with each of ``names`` widened to its min-max range."""
    result = dict(ranges)
    for name in names:
        result[name] = replace(ranges[name], amax=stats[name].absmax, method="minmax",
                               reason=f"widened by --fit-budget (was {ranges[name].method}, amax {ranges[name].amax:.4g})")
    return result
