"""Make a model from the field ready for calibration, prove each change kept its outputs, and say what changed.

Models shipped by others often break quantizers: weights stored as ``Constant`` nodes, opset 11,
unfolded ``BatchNormalization``, compute inside ``If`` subgraphs. :func:`prepare` runs a fixed list of
steps (opset upgrade to 13, constant folding with onnx-graphsurgeon, batch-norm folding into the preceding
Conv/ConvTranspose/Gemm, node naming, shape inference). After every step that changed the model, ONNX
Runtime runs it and the original on a few calibration samples: a step after which the model does not load,
or any output moves by more than float tolerance (:func:`tolerance`), is undone for this model and the
report says which step and why. Graph input and output names never change.

What must stay in float is listed with its reason: tensors inside If/Loop/Scan subgraphs, the outputs of
recurrent layers (LSTM, GRU, RNN), and recurrent state (an input and an output of the same shape, fed back
from one step to the next).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import version_converter

from edgeq import model as model_io
from edgeq.calibrate import activations
from edgeq.calibrate.policy import CONTROL_FLOW_OPS, subgraph_tensors
from edgeq.calibrate.report import PreparationStep
from edgeq.errors import InputError
from edgeq.graph import GraphIndex, subgraphs

MIN_OPSET = 13  # per-channel (axis) QuantizeLinear/DequantizeLinear
FOLD_SIZE_LIMIT = 64 << 20  # bytes: larger computed constants (Tile/Expand of constants) stay computed at run time
BN_HOSTS = frozenset({"Conv", "ConvTranspose", "Gemm"})
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
CHECK_SAMPLES = 2  # calibration samples each prepared model is run on against the original
RELATIVE_TOLERANCE = 1e-4  # of an output's largest |value|: float reassociation (folded batch norms) stays far below
ABSOLUTE_TOLERANCE = 1e-6

Feeds = dict[str, np.ndarray]


@dataclass
class PreparedModel:
    """A float model ready for calibration, what was changed, and what must stay in float."""

    model: onnx.ModelProto
    notes: list[str] = field(default_factory=list)
    unquantizable: dict[str, str] = field(default_factory=dict)
    steps: list[PreparationStep] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)  # recurrent state: input name -> the output fed back into it


class _Skip(Exception):
    """A step that cannot be applied to this model (its message says why)."""


def tolerance(reference: np.ndarray) -> float:
    """How far an output may move and still count as unchanged: relative to its largest |value|."""
    finite = np.abs(reference[np.isfinite(reference)]) if reference.dtype.kind == "f" else np.abs(reference)
    scale = float(finite.max()) if finite.size else 0.0
    return ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * scale


def _run(model: onnx.ModelProto, feeds: list[Feeds]) -> list[dict[str, np.ndarray]]:
    sess = activations.session(model)
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    return [dict(zip(names, activations.run(sess, {k: v for k, v in feed.items() if k in wanted}, names), strict=True))
            for feed in feeds]


def _difference(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]]) -> tuple[float, str]:
    """The largest |difference| over every output, and a reason when one is beyond tolerance ('' when none is)."""
    worst = 0.0
    for want, got in zip(reference, candidate, strict=True):
        for name, expected in want.items():
            actual = got.get(name)
            if actual is None or actual.shape != expected.shape:
                found = "missing" if actual is None else f"shape {list(actual.shape)}"
                return float("inf"), f"output '{name}' is {found}, the original gives {list(expected.shape)}"
            same_nan = np.isnan(expected) == np.isnan(actual) if expected.dtype.kind == "f" else True
            if not np.all(same_nan):
                return float("inf"), f"output '{name}' has NaN where the original has none (or the reverse)"
            diff = np.abs(np.nan_to_num(actual.astype(np.float64) - expected.astype(np.float64)))
            largest = float(diff.max()) if diff.size else 0.0
            worst = max(worst, largest)
            if largest > tolerance(expected):
                return worst, f"output '{name}' moved by up to {largest:.3g} (tolerance {tolerance(expected):.3g})"
    return worst, ""


def state_inputs(model: onnx.ModelProto, feeds: Feeds, outputs: dict[str, np.ndarray]) -> dict[str, str]:
    """Recurrent state: each input but the data set's (the first of ``feeds``, whatever the model's order of inputs)
    whose array has the shape and dtype of an output -> that output."""
    pairs: dict[str, str] = {}
    data = next(iter(feeds), None)
    for name in GraphIndex(model).inputs:
        if name == data or name not in feeds:
            continue
        fed = feeds[name]
        match = next((o for o, v in outputs.items() if v.shape == fed.shape and v.dtype == fed.dtype and o not in pairs.values()), None)
        if match is not None and fed.dtype.kind == "f":
            pairs[name] = match
    return pairs


def prepare(
    model: onnx.ModelProto, *, source: str = "", feeds: list[Feeds] | None = None, state: dict[str, str] | None = None
) -> PreparedModel:
    """Return ``model`` as FP32 with default opset >= 13, constants and batch norms folded, shapes inferred.

    ``feeds``: a few batches of real inputs (every input by name); each step is checked on them against the
    original and undone where it changes the outputs. Without them nothing is checked and the notes say so.
    ``state``: recurrent state the recipe declares (input -> output fed back); else found by shape on ``feeds``.
    ``source`` (a path) names the model in messages. Raises :class:`InputError` when the original does not
    run, or when the opset cannot be upgraded to 13 without changing the outputs.
    """
    name = source or model.graph.name or "model"
    original = GraphIndex(model)
    notes: list[str] = []
    reference = _run(model, feeds) if feeds else None
    steps: list[PreparationStep] = []
    current = model
    for step_name, step in _STEPS:
        started = time.perf_counter()
        try:
            candidate, step_notes = step(current, name)
        except _Skip as skip:
            steps.append(PreparationStep(name=step_name, applied=False, reason=str(skip), seconds=time.perf_counter() - started))
            continue
        if candidate is current:  # nothing to change for this model
            notes += step_notes
            continue
        diff, why = 0.0, ""
        if reference is not None and feeds:
            try:
                diff, why = _difference(reference, _run(candidate, feeds))
            except InputError as exc:
                diff, why = float("inf"), f"the result does not run: {exc}"
        seconds = time.perf_counter() - started
        if why:
            if step_name == "opset upgrade":
                raise InputError(f"{name}: upgrading the default opset to {MIN_OPSET} changes the model: {why};"
                                 f" re-export the model at opset {MIN_OPSET} or newer")
            steps.append(PreparationStep(name=step_name, applied=False, max_abs_diff=diff if np.isfinite(diff) else None,
                                         reason=why, seconds=seconds))
            notes.append(f"skipped {step_name}: {why}")
            continue
        steps.append(PreparationStep(name=step_name, applied=True, max_abs_diff=diff if reference is not None else None,
                                     seconds=seconds))
        notes += step_notes
        current = candidate
    if reference is None:
        notes.append("preparation was not checked against the original (no samples)")
    prepared = current
    _check(model, prepared, name)
    index = GraphIndex(prepared)
    if (index.inputs, index.outputs) != (original.inputs, original.outputs):
        raise InputError(f"{name}: preparing the model changed its input/output names (edgeq bug; please report)")
    unquantizable = subgraph_tensors(prepared)
    if unquantizable:
        holders = sorted({n.name or n.output[0] for n in prepared.graph.node if n.op_type in CONTROL_FLOW_OPS})
        notes.append(
            f"{len(unquantizable)} tensor(s) inside the subgraphs of {', '.join(holders)} stay in float:"
            " calibration only sees main-graph tensors"
        )
    recurrent = {out: f"output of {n.op_type} '{n.name}': recurrent layers stay in float" for n in prepared.graph.node
                 if n.op_type in RECURRENT_OPS for out in n.output if out}
    if recurrent:
        notes.append(f"{len(recurrent)} output(s) of recurrent layers (LSTM/GRU/RNN) stay in float")
    state = state or (state_inputs(prepared, feeds[0], reference[0]) if feeds and reference else {})
    for fed, returned in state.items():
        reason = f"recurrent state ('{fed}' is fed back from output '{returned}'): stays in float"
        recurrent.setdefault(fed, reason)
        recurrent.setdefault(returned, reason)
    if state:
        notes.append("recurrent state stays in float: " + ", ".join(f"{i} <- {o}" for i, o in state.items()))
    for tensor, reason in recurrent.items():
        unquantizable.setdefault(tensor, reason)
    return PreparedModel(model=prepared, notes=notes, unquantizable=unquantizable, steps=steps, state=state)


def _upgrade_opset(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, list[str]]:
    version = model_io.opset(model)
    if version >= MIN_OPSET:
        return model, []
    try:
        upgraded = version_converter.convert_version(model, MIN_OPSET)
        onnx.checker.check_model(upgraded)
    except Exception as exc:  # noqa: BLE001 (the converter raises several unrelated types)
        raise InputError(
            f"{name}: default opset {version} could not be upgraded to {MIN_OPSET} with onnx.version_converter"
            f" ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'});"
            f" re-export the model at opset {MIN_OPSET} or newer"
        ) from None
    return upgraded, [f"upgraded the default opset from {version} to {MIN_OPSET} (per-channel DequantizeLinear needs {MIN_OPSET})"]


def _graphsurgeon(model: onnx.ModelProto, change: Callable[[gs.Graph], None]) -> onnx.ModelProto:
    """``model`` rewritten by ``change`` through onnx-graphsurgeon, cleaned up, with its metadata kept."""
    with gs.logger.G_LOGGER.suppress(gs.logger.G_LOGGER.ERROR):  # findings go to the notes
        graph = gs.import_onnx(model)
        change(graph)
        graph.cleanup().toposort()
        result = gs.export_onnx(graph)
    result.ir_version = max(result.ir_version, model.ir_version, 4)  # IR 3 lists every initializer as an input
    _copy_metadata(model, result)
    return result


def _fold_constants(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, list[str]]:
    constant_nodes = _count_ops(model.graph, {"Constant"})
    before = _count_ops(model.graph, None)
    folded = _graphsurgeon(model, lambda graph: graph.fold_constants(
        flatten_subgraphs=False,  # graphsurgeon's If-flattening can break topological order
        partitioning="recursive",
        size_threshold=FOLD_SIZE_LIMIT,
    ))
    left = _count_ops(folded.graph, {"Constant"})
    computed = before - constant_nodes - (_count_ops(folded.graph, None) - left)
    notes = [f"turned {constant_nodes - left} Constant node(s) into initializers"] if constant_nodes - left else []
    if computed > 0:
        notes.append(f"folded {computed} node(s) that computed only from constants")
    return (folded, notes) if notes else (model, [])


def _fold_bn_step(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, list[str]]:
    if not _count_ops(model.graph, {"BatchNormalization"}):
        return model, []
    notes: list[str] = []
    folded = _graphsurgeon(model, lambda graph: notes.extend(_fold_batch_norms(graph)))
    return (folded, notes) if any(note.startswith("folded") for note in notes) else (model, notes)


def _name_step(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, list[str]]:
    named = onnx.ModelProto()
    named.CopyFrom(model)
    count = _name_unnamed_nodes(named.graph)
    return (named, [f"named {count} unnamed node(s) after their op type"]) if count else (model, [])


def _infer_step(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, list[str]]:
    inferred = onnx.ModelProto()
    inferred.CopyFrom(model)
    del inferred.graph.value_info[:]  # stale after folding; inferred anew
    try:
        return onnx.shape_inference.infer_shapes(inferred, strict_mode=False, data_prop=True), []
    except Exception as exc:  # noqa: BLE001 (onnx raises several unrelated types here)
        raise _Skip(f"ONNX shape inference failed: {str(exc).splitlines()[0]}") from None


Step = Callable[[onnx.ModelProto, str], tuple[onnx.ModelProto, list[str]]]
_STEPS: list[tuple[str, Step]] = [
    ("opset upgrade", _upgrade_opset),
    ("constant folding", _fold_constants),
    ("batch-norm folding", _fold_bn_step),
    ("node naming", _name_step),
    ("shape inference", _infer_step),
]


def _count_ops(graph: onnx.GraphProto, ops: set[str] | None) -> int:
    """Nodes in ``graph`` and its subgraphs whose op is in ``ops`` (all nodes if None)."""
    total = 0
    for node in graph.node:
        total += ops is None or node.op_type in ops
        total += sum(_count_ops(sub, ops) for _, sub in subgraphs(node))
    return total


def _fold_batch_norms(graph: gs.Graph) -> list[str]:
    """Fold each foldable BatchNormalization into its producer; return notes."""
    folded = 0
    kept: dict[str, list[str]] = {}
    for bn in [node for node in graph.nodes if node.op == "BatchNormalization"]:
        reason = _bn_blocker(bn, graph)
        if reason:
            kept.setdefault(reason, []).append(bn.name or bn.outputs[0].name)
            continue
        _fold_one(bn, graph)
        folded += 1
    notes = [f"folded {folded} BatchNormalization node(s) into the preceding Conv/ConvTranspose/Gemm"] if folded else []
    for reason, names in kept.items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        notes.append(f"kept {len(names)} BatchNormalization node(s) unfolded ({shown}): {reason}")
    return notes


def _bn_blocker(bn: gs.Node, graph: gs.Graph) -> str:
    """Why ``bn`` cannot be folded, or '' when it can."""
    if bn.attrs.get("training_mode", 0) or len([o for o in bn.outputs if o.name]) > 1:
        return "it runs in training mode"
    if len(bn.inputs) < 5 or not all(isinstance(t, gs.Constant) for t in bn.inputs[1:5]):
        return "its scale, bias, mean or variance is computed at run time"
    source = bn.inputs[0]
    if not source.inputs or source.inputs[0].op not in BN_HOSTS:
        return "its input is not produced by a Conv, ConvTranspose or Gemm"
    host = source.inputs[0]
    if len(source.outputs) > 1 or source in graph.outputs:
        return "the output of the preceding layer is also used elsewhere"
    if not all(isinstance(t, gs.Constant) for t in host.inputs[1:]):
        return "the preceding layer's weights or bias are computed at run time"
    return ""


def _fold_one(bn: gs.Node, graph: gs.Graph) -> None:
    """Rewrite the producer's weights and bias so it computes BN(producer(x)); detach ``bn``."""
    gamma, beta, mean, var = (t.values.astype(np.float64) for t in bn.inputs[1:5])
    scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    host = bn.inputs[0].inputs[0]
    weight = host.inputs[1]
    w = weight.values.astype(np.float64)
    if host.op == "Conv":
        w = w * scale.reshape(-1, *[1] * (w.ndim - 1))
        bias = host.inputs[2].values.astype(np.float64) if len(host.inputs) > 2 else np.zeros_like(scale)
    elif host.op == "ConvTranspose":
        group = int(host.attrs.get("group", 1))
        shaped = w.reshape(group, w.shape[0] // group, w.shape[1], *w.shape[2:])
        w = (shaped * scale.reshape(group, 1, w.shape[1], *[1] * (w.ndim - 2))).reshape(w.shape)
        bias = host.inputs[2].values.astype(np.float64) if len(host.inputs) > 2 else np.zeros_like(scale)
    else:  # Gemm: output columns are the BN channels
        w = w * (scale[:, None] if host.attrs.get("transB", 0) else scale[None, :])
        c = host.inputs[2].values.astype(np.float64) if len(host.inputs) > 2 else np.zeros(1)
        bias = float(host.attrs.get("beta", 1.0)) * c
        host.attrs["beta"] = 1.0
    new_bias = (bias - mean) * scale + beta
    stem = bn.outputs[0].name
    host.inputs[1] = gs.Constant(f"{stem}__bn_folded_weight", w.astype(weight.values.dtype))
    bias_tensor = gs.Constant(f"{stem}__bn_folded_bias", new_bias.astype(weight.values.dtype))
    if len(host.inputs) > 2:
        host.inputs[2] = bias_tensor
    else:
        host.inputs.append(bias_tensor)
    result = bn.outputs[0]
    bn.outputs.clear()
    bn.inputs.clear()
    host.outputs[0] = result


def _copy_metadata(original: onnx.ModelProto, prepared: onnx.ModelProto) -> None:
    for key in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(prepared, key, getattr(original, key))
    del prepared.metadata_props[:]
    prepared.metadata_props.extend(original.metadata_props)


def _name_unnamed_nodes(graph: onnx.GraphProto) -> int:
    """Give every unnamed main-graph node a unique name (quantizers address nodes by name)."""
    taken = {node.name for node in graph.node if node.name}
    count = 0
    for index, node in enumerate(graph.node):
        if node.name:
            continue
        candidate = f"{node.op_type}_{index}"
        while candidate in taken:
            candidate += "_"
        node.name = candidate
        taken.add(candidate)
        count += 1
    return count


def _check(original: onnx.ModelProto, prepared: onnx.ModelProto, name: str) -> None:
    """The prepared model must pass onnx.checker whenever the original did."""
    try:
        onnx.checker.check_model(prepared)
    except onnx.checker.ValidationError as exc:
        try:
            onnx.checker.check_model(original)
        except onnx.checker.ValidationError:
            return  # the original already fails the checker; ONNX Runtime remains the judge
        raise InputError(f"{name}: the prepared model fails onnx.checker ({str(exc).splitlines()[0]}); edgeq bug, please report") from None
