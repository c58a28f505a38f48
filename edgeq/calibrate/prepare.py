"""Make a model from the field ready for calibration, and say in words what was changed.

Models shipped by others often break quantizers: weights stored as ``Constant`` nodes, opset 11,
unfolded ``BatchNormalization``, compute inside ``If`` subgraphs. :func:`prepare` folds constants
(onnx-graphsurgeon, evaluated by ONNX Runtime), folds batch norms into the preceding
Conv/ConvTranspose/Gemm, upgrades the default opset to 13 (per-channel DequantizeLinear needs it),
and lists what must stay in float. Graph input and output names never change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import version_converter

from edgeq.calibrate.policy import CONTROL_FLOW_OPS, subgraph_tensors
from edgeq.errors import InputError

MIN_OPSET = 13  # per-channel (axis) QuantizeLinear/DequantizeLinear
FOLD_SIZE_LIMIT = 64 << 20  # bytes: larger computed constants (Tile/Expand of constants) stay computed at run time
BN_HOSTS = frozenset({"Conv", "ConvTranspose", "Gemm"})


@dataclass
class PreparedModel:
    """A float model ready for calibration, what was changed, and what must stay in float."""

    model: onnx.ModelProto
    notes: list[str] = field(default_factory=list)
    unquantizable: dict[str, str] = field(default_factory=dict)


def prepare(model: onnx.ModelProto, *, source: str = "") -> PreparedModel:
    """Return ``model`` as FP32 with default opset >= 13, constants and batch norms folded, shapes inferred.

    ``source`` (a path) names the model in error messages. Raises :class:`InputError` when the opset
    cannot be upgraded or the result would not pass ``onnx.checker``.
    """
    name = source or model.graph.name or "model"
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    notes: list[str] = []

    model = _upgrade_opset(model, name, notes)
    constant_nodes = _count_ops(model.graph, {"Constant"})
    before = _count_ops(model.graph, None)
    with gs.logger.G_LOGGER.suppress(gs.logger.G_LOGGER.ERROR):  # findings go to the notes
        graph = gs.import_onnx(model)
        graph.fold_constants(
            flatten_subgraphs=False,  # graphsurgeon's If-flattening can break topological order
            partitioning="recursive",
            size_threshold=FOLD_SIZE_LIMIT,
        ).cleanup().toposort()
        folded_model = gs.export_onnx(graph)
    left = _count_ops(folded_model.graph, {"Constant"})
    if constant_nodes - left:
        notes.append(f"turned {constant_nodes - left} Constant node(s) into initializers")
    computed = before - constant_nodes - (_count_ops(folded_model.graph, None) - left)
    if computed > 0:
        notes.append(f"folded {computed} node(s) that computed only from constants")

    with gs.logger.G_LOGGER.suppress(gs.logger.G_LOGGER.ERROR):  # findings go to the notes
        graph = gs.import_onnx(folded_model)
        notes += _fold_batch_norms(graph)
        graph.cleanup().toposort()
        prepared = gs.export_onnx(graph)
    prepared.ir_version = max(prepared.ir_version, folded_model.ir_version)
    _copy_metadata(model, prepared)
    unnamed = _name_unnamed_nodes(prepared.graph)
    if unnamed:
        notes.append(f"named {unnamed} unnamed node(s) after their op type")
    prepared = _infer_shapes(prepared, name)
    _check(model, prepared, name)

    if [i.name for i in prepared.graph.input] != inputs or [o.name for o in prepared.graph.output] != outputs:
        raise InputError(f"{name}: preparing the model changed its input/output names (edgeq bug; please report)")
    unquantizable = subgraph_tensors(prepared)
    if unquantizable:
        holders = sorted({n.name or n.output[0] for n in prepared.graph.node if n.op_type in CONTROL_FLOW_OPS})
        notes.append(
            f"{len(unquantizable)} tensor(s) inside the subgraphs of {', '.join(holders)} stay in float:"
            " calibration only sees main-graph tensors"
        )
    return PreparedModel(model=prepared, notes=notes, unquantizable=unquantizable)


def _default_opset(model: onnx.ModelProto) -> int:
    return next((e.version for e in model.opset_import if e.domain in ("", "ai.onnx")), 1)


def _upgrade_opset(model: onnx.ModelProto, name: str, notes: list[str]) -> onnx.ModelProto:
    version = _default_opset(model)
    if version >= MIN_OPSET:
        return model
    try:
        upgraded = version_converter.convert_version(model, MIN_OPSET)
        onnx.checker.check_model(upgraded)
    except Exception as exc:  # noqa: BLE001 (the converter raises several unrelated types)
        raise InputError(
            f"{name}: default opset {version} could not be upgraded to {MIN_OPSET} with onnx.version_converter"
            f" ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'});"
            f" re-export the model at opset {MIN_OPSET} or newer"
        ) from None
    notes.append(f"upgraded the default opset from {version} to {MIN_OPSET} (per-channel DequantizeLinear needs {MIN_OPSET})")
    return upgraded


def _count_ops(graph: onnx.GraphProto, ops: set[str] | None) -> int:
    """Nodes in ``graph`` and its subgraphs whose op is in ``ops`` (all nodes if None)."""
    total = 0
    for node in graph.node:
        total += ops is None or node.op_type in ops
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            total += sum(_count_ops(sub, ops) for sub in subs)
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


def _infer_shapes(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    del model.graph.value_info[:]  # stale after folding; inferred anew
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 (onnx raises several unrelated types here)
        raise InputError(f"{name}: ONNX shape inference failed on the prepared model: {exc}") from None


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
