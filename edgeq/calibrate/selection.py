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

:class:`OutputError` runs the FP32 model with any set of tensors fake-quantized on TensorRT's symmetric
INT8 grid in one ONNX Runtime session (ranges fed as inputs, no model rebuilt): the layer sensitivity
ranking uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeq.calibrate import activations
from edgeq.calibrate.ranges import TensorRange, amax_of
from edgeq.calibrate.report import PredictedAccuracy
from edgeq.calibrate.stats import TensorStats

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
    producer = {out: node for node in model.graph.node for out in node.output if out}
    found: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type in BOUNDED_OPS and node.output[0] in wanted:
            found[node.output[0]] = (
                f"bounded output of {node.op_type} '{node.name}' (|x| <= 1): the full range costs at most a 1/127 step,"
                " a clipped probability or gate saturates"
            )
    frontier = [(o.name, o.name, []) for o in model.graph.output]
    seen: set[str] = set()
    while frontier:
        name, output, path = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in wanted:
            via = f" through {' -> '.join(reversed(path))}" if path else ""
            found[name] = f"feeds output '{output}'{via}: clipping it clips what the task decodes (scores, boxes, logits)"
        node = producer.get(name)
        if node is None or node.op_type not in PASS_ON:
            continue
        inputs = [i for i in node.input if i in wanted]
        if node.op_type in SCALING_OPS and len(inputs) > 1:
            continue  # a product of two activations does not carry either one's range
        if node.op_type in ("Reshape", "Slice", "Resize", "Clip", "Split") and node.input:
            inputs = [i for i in inputs if i == node.input[0]]
        for tensor in inputs:
            frontier.append((tensor, output, [*path, node.op_type]))
    return found


IDENTITY_STEP = 2.0**-60  # unclipped, this grid keeps every float32 of magnitude >= 2**-37 exactly (smaller ones move <= 2**-61)


def _quantizer_nodes(tensor: str, raw: str, index: int) -> list[onnx.NodeProto]:
    """Nodes computing ``tensor`` = round(clip(raw, -amax, amax) / step) * step, amax and step from the inputs."""
    p = f"edgeq_sim_{index}"
    return [
        helper.make_node("Gather", ["edgeq_amax", f"{p}_i"], [f"{p}_a"], axis=0),
        helper.make_node("Gather", ["edgeq_low", f"{p}_i"], [f"{p}_l"], axis=0),
        helper.make_node("Gather", ["edgeq_step", f"{p}_i"], [f"{p}_s"], axis=0),
        helper.make_node("Gather", ["edgeq_inverse", f"{p}_i"], [f"{p}_v"], axis=0),
        helper.make_node("Clip", [raw, f"{p}_l", f"{p}_a"], [f"{p}_c"]),
        helper.make_node("Mul", [f"{p}_c", f"{p}_v"], [f"{p}_d"]),
        helper.make_node("Round", [f"{p}_d"], [f"{p}_r"]),
        helper.make_node("Mul", [f"{p}_r", f"{p}_s"], [tensor]),
    ]


SIM_INPUTS = ("edgeq_amax", "edgeq_low", "edgeq_step", "edgeq_inverse")


def simulation_model(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """``model`` with each of ``tensors`` fake-quantized by the inputs :data:`SIM_INPUTS` (one value per tensor)."""
    sim = onnx.ModelProto()
    sim.CopyFrom(model)
    graph = sim.graph
    index = {name: i for i, name in enumerate(tensors)}
    inputs = {i.name for i in graph.input}
    nodes: list[onnx.NodeProto] = []
    for name in tensors:  # graph inputs: quantize into a new name, read by the consumers
        if name in inputs:
            nodes += _quantizer_nodes(f"{name}__edgeq_sim", name, index[name])
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in inputs and name in index:
                node.input[position] = f"{name}__edgeq_sim"
        produced = []
        for position, name in enumerate(node.output):
            if name in index and name not in inputs:
                node.output[position] = f"{name}__edgeq_raw"
                produced.append(name)
        nodes.append(node)
        for name in produced:
            nodes += _quantizer_nodes(name, f"{name}__edgeq_raw", index[name])
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(np.array(i, np.int64), f"edgeq_sim_{i}_i") for i in range(len(tensors)))
    graph.input.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, [len(tensors)]) for n in SIM_INPUTS)
    del graph.value_info[:]
    return sim


def output_error(reference: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """Squared error relative to ``reference``, per slice along axis 1, averaged over slices and outputs."""
    errors = []
    for want, got in zip(reference, outputs):
        want, got = np.asarray(want, np.float64), np.asarray(got, np.float64)
        if want.ndim >= 2:
            want, got = np.moveaxis(want, 1, 0).reshape(want.shape[1], -1), np.moveaxis(got, 1, 0).reshape(got.shape[1], -1)
        else:
            want, got = want.reshape(1, -1), got.reshape(1, -1)
        energy = (want**2).sum(axis=1)
        errors.append(float(np.mean(((want - got) ** 2).sum(axis=1) / np.maximum(energy, 1e-30))))
    return float(np.mean(errors)) if errors else 0.0


class OutputError:
    """The output error of any choice of ranges (and of which tensors are quantized), on fixed samples."""

    def __init__(self, model: onnx.ModelProto, tensors: list[str], x: np.ndarray) -> None:
        self.tensors = tensors
        self.position = {name: i for i, name in enumerate(tensors)}
        self.session = activations.session(simulation_model(model, tensors))
        self.input = model.graph.input[0].name
        self.outputs = [o.name for o in model.graph.output]
        batch = activations.fixed_batch(self.session)
        self.pieces = [x] if batch is None else [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)]
        self.reference = self._run(self.vectors({}, ()))
        self.runs = 0

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        parts = [self.session.run(self.outputs, {self.input: piece, **feeds}) for piece in self.pieces]
        return [np.concatenate(column) for column in zip(*parts)]

    def vectors(self, amax: Mapping[str, float], quantized: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The simulation inputs: ``quantized`` tensors (all by default) on the INT8 grid of ``amax``, the others exact."""
        count = len(self.tensors)
        high = np.full(count, np.finfo(np.float32).max, np.float32)
        step = np.full(count, IDENTITY_STEP, np.float32)
        for name in self.tensors if quantized is None else quantized:
            value = amax.get(name, 0.0)
            if name in self.position and np.isfinite(value) and value > 0:
                high[self.position[name]] = value
                step[self.position[name]] = value / 127.0
        return {"edgeq_amax": high, "edgeq_low": -high, "edgeq_step": step, "edgeq_inverse": (1.0 / step).astype(np.float32)}

    def __call__(self, amax: Mapping[str, float], quantized: Iterable[str] | None = None) -> float:
        """Output error with ``quantized`` tensors (all by default) at ``amax``, the others in float."""
        return output_error(self.reference, self.outputs_for(amax, quantized))

    def outputs_for(self, amax: Mapping[str, float], quantized: Iterable[str] | None = None) -> list[np.ndarray]:
        self.runs += 1
        return self._run(self.vectors(amax, quantized))


def base_ranges(
    stats: Mapping[str, TensorStats], method: str, percentile: float, protected: Mapping[str, str], why: str
) -> dict[str, TensorRange]:
    """``method``'s range (because ``why``) for every tensor, min-max for the protected ones, each with its reason."""
    ranges = {}
    for name, s in stats.items():
        chosen, reason = ("minmax", protected[name]) if name in protected else (method, why)
        ranges[name] = TensorRange(name, amax_of(s, chosen, percentile), s.min, s.max, chosen, reason)
    return ranges


@dataclass
class MethodChoice:
    """Which method the tensors that are not protected got, and the metric each candidate reached (INT8)."""

    method: str
    trials: dict[str, float]
    why: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def choose_method(first: PredictedAccuracy, trial: Callable[[str], PredictedAccuracy]) -> tuple[MethodChoice, PredictedAccuracy]:
    """``auto``: keep :data:`BASE_METHOD` when it loses nothing, else the candidate with the best INT8 metric.

    ``first`` is the base method's predicted accuracy; ``trial(method)`` predicts another's. Ties go to
    the earlier candidate in :data:`CANDIDATE_METHODS`.
    """
    trials = {BASE_METHOD: first.int8}
    results = {BASE_METHOD: first}
    if first.drop <= 0:
        why = f"{BASE_METHOD} loses nothing against FP32 ({first.metric} {first.int8:.2f})"
        return MethodChoice(BASE_METHOD, trials, why), first
    for method in CANDIDATE_METHODS:
        if method not in results:
            results[method] = trial(method)
            trials[method] = results[method].int8
    best = max(CANDIDATE_METHODS, key=lambda m: (results[m].int8, -CANDIDATE_METHODS.index(m)))
    shown = ", ".join(f"{m} {v:.2f}" for m, v in trials.items())
    why = f"{BASE_METHOD} dropped {first.drop:.2f} points; {first.metric} in INT8 by method: {shown}; {best} kept the most"
    return MethodChoice(best, trials, why), results[best]


def method_counts(ranges: Mapping[str, TensorRange], names: Iterable[str]) -> dict[str, dict[str, object]]:
    """Per method: how many of ``names`` got it, and up to five of them with why."""
    counts: dict[str, dict[str, object]] = {}
    for name in names:
        entry = counts.setdefault(ranges[name].method, {"tensors": 0, "examples": {}})
        entry["tensors"] = int(entry["tensors"]) + 1  # type: ignore[call-overload]
        examples = entry["examples"]
        if isinstance(examples, dict) and len(examples) < 5:
            examples[name] = ranges[name].reason
    return counts


def widened(ranges: Mapping[str, TensorRange], stats: Mapping[str, TensorStats], names: Iterable[str]) -> dict[str, TensorRange]:
    """``ranges`` with each of ``names`` widened to its min-max range."""
    result = dict(ranges)
    for name in names:
        result[name] = replace(ranges[name], amax=stats[name].absmax, method="minmax",
                               reason=f"widened by --fit-budget (was {ranges[name].method}, amax {ranges[name].amax:.4g})")
    return result
