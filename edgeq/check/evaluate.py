"""The evaluator: applies a target's rule files to every node of a model and to the model as a whole."""

from __future__ import annotations

from typing import Any

import onnx

from edgeq import model as model_io
from edgeq.check import op_support, rules
from edgeq.check.facts import FACTS, NOT_APPLICABLE, Missing, NodeContext
from edgeq.check.macs import node_macs
from edgeq.check.macs import shares as mac_shares
from edgeq.check.report import CheckReport, Gate, NodeResult, Reason
from edgeq.check.rules import Rule, RuleFile
from edgeq.errors import InputError
from edgeq.graph import GraphIndex, describe_dims
from edgeq.targets import Target

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Pow"})
ORT_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
UNKNOWN = Missing.UNKNOWN  # a rule whose fact cannot be known offline


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _violation(rule: Rule, ctx: NodeContext) -> tuple[str, str] | object | None:
    """(value, limit) as shown in the reason when ``rule`` fails; None when it holds or does not apply; UNKNOWN."""
    value = FACTS[rule.fact](ctx)
    if value is NOT_APPLICABLE:
        return None
    if value is None:
        return UNKNOWN
    if rule.below_fact is not None:
        other = FACTS[rule.below_fact](ctx)
        if other is None or other is NOT_APPLICABLE:
            return UNKNOWN
        for mine, theirs in zip(value, other, strict=False):
            if not mine < theirs:
                return _shown(mine), _shown(theirs)
        return None
    if rule.equals is not None or rule.one_of is not None:
        allowed = (rule.equals,) if rule.equals is not None else rule.one_of or ()
        holds = any(value is a if isinstance(a, bool) or isinstance(value, bool) else value == a for a in allowed)
        return None if holds else (_shown(value), ", ".join(_shown(a) for a in allowed))
    for item in value if isinstance(value, list) else [value]:
        if rule.max is not None and item > rule.max:
            return _shown(item), _shown(rule.max)
        if rule.min is not None and item < rule.min:
            return _shown(item), _shown(rule.min)
        if rule.multiple_of is not None and item % rule.multiple_of:
            return _shown(item), _shown(rule.multiple_of)
        if rule.integer and not float(item).is_integer():
            return _shown(item), "an integer"
    return None


def _apply(rule_file: RuleFile, verdicts: tuple[str, ...], ctx: NodeContext, result: NodeResult) -> list[Reason]:
    """The reasons of every rule of ``rule_file`` with one of ``verdicts`` that the node breaks."""
    found = []
    op = ctx.node.op_type
    for rule in rule_file.rules:
        if rule.verdict not in verdicts or not rule.applies_to(op):
            continue
        outcome = _violation(rule, ctx)
        if outcome is UNKNOWN:
            result.notes.append(f"{rule.id} not checked: {rule.fact} is unknown offline")
        elif isinstance(outcome, tuple):
            value, limit = outcome
            found.append(Reason(rule=rule.id, message=rule.reason.format(value=value, limit=limit, op=op), source=rule.source))
    return found


def _parser_reason(main: RuleFile, ctx: NodeContext) -> Reason | None:
    """Why the target's ONNX parser (or ONNX Runtime) rejects the node, or None if it takes it."""
    node = ctx.node
    if main.parser is None:
        if node.domain in ORT_DOMAINS:
            return None
        return Reason(rule="parser.domain", message=f"custom op {node.domain}::{node.op_type} is not an ONNX Runtime op",
                      source=main.int8_ops.source if main.int8_ops else "")
    if node.domain not in ("", "ai.onnx"):
        return Reason(rule="parser.domain", message=f"custom op {node.domain}::{node.op_type} needs a TensorRT plugin",
                      source=main.parser.source)
    entry = op_support.table(main.parser.op_support_column).get(node.op_type)
    if entry is not None and entry.supported:
        return None
    why = "is not in its operator table" if entry is None or not entry.listed else "is listed as unsupported"
    return Reason(rule="parser.op", message=f"the TensorRT {main.family} ONNX parser rejects {node.op_type} ({why})",
                  source=main.parser.source)


def _is_folded(main: RuleFile, ctx: NodeContext) -> bool:
    outputs = [o for o in ctx.node.output if o]
    if ctx.node.op_type in main.ops_of("folded_ops"):
        return True
    return bool(outputs) and all(ctx.graph.is_integer(o) for o in outputs)


def _gpu_verdict(main: RuleFile, ctx: NodeContext, result: NodeResult, int8_blocked: str | None) -> None:
    op = ctx.node.op_type
    rejected = _parser_reason(main, ctx)
    if rejected is not None:
        result.verdict, result.reasons = "unsupported", [rejected]
        return
    unsupported = _apply(main, ("unsupported",), ctx, result)
    if unsupported:
        result.verdict, result.reasons = "unsupported", unsupported
        return
    source = main.folded_ops.source if main.folded_ops else ""
    if _is_folded(main, ctx):
        result.verdict = "int8-passthrough"
        result.reasons = [Reason(rule="folded", message="constant or shape arithmetic: no activations to quantize", source=source)]
        return
    if op in main.ops_of("int8_ops") | main.ops_of("int8_elementwise_ops"):
        result.verdict = "int8"
    elif op in main.ops_of("passthrough_ops"):
        result.verdict = "int8-passthrough"
    else:
        template = main.fallback_reasons.get(op) or main.default_fallback_reason or "{op} runs in higher precision"
        reason = template.format(op=op, family=main.family)
        result.verdict = "fallback"
        result.reasons = [Reason(rule="no-int8-kernel", message=reason, source=main.int8_ops.source if main.int8_ops else "")]
        return
    demoted = _apply(main, ("fallback",), ctx, result)
    if demoted:
        result.verdict, result.reasons = "fallback", demoted
    elif int8_blocked:
        result.verdict, result.reasons = "fallback", [Reason(rule="int8-off", message=int8_blocked, source="")]


def _dla_verdict(dla: RuleFile, ctx: NodeContext, result: NodeResult) -> None:
    op = ctx.node.op_type
    if op not in dla.ops_of("dla_ops"):
        template = dla.dla_op_reasons.get(op) or dla.default_dla_reason or "{op} has no DLA layer"
        source = dla.dla_ops.source if dla.dla_ops else ""
        result.dla = "gpu-fallback"
        result.dla_reasons = [Reason(rule="dla.op", message=template.format(op=op, family=dla.family), source=source)]
        return
    reasons = _apply(dla, ("gpu-fallback",), ctx, result)
    result.dla, result.dla_reasons = ("gpu-fallback", reasons) if reasons else ("dla", [])
    if op in dla.dla_disputed:
        result.dla_disputed = f"NVIDIA's sources disagree on {op} on the DLA: {dla.dla_disputed[op]}"


def _gate(rule_file: RuleFile, gate_id: str, status: str, message: str, blocking: bool = True) -> list[Gate]:
    info = rule_file.gates.get(gate_id)
    if info is None:
        return []
    return [Gate(id=gate_id, title=info.title, status=status, blocking=blocking, message=message, source=info.source)]  # type: ignore[arg-type]


def _node_list(nodes: list[NodeResult], limit: int = 5) -> str:
    shown = ", ".join(f"{n.op} ({n.name})" for n in nodes[:limit])
    return shown + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")


def _parser_made_tensors(model: onnx.ModelProto, graph: GraphIndex) -> tuple[int, int]:
    """MatMul nodes, and element-wise inputs of lower rank than the node's output (the parser broadcasts them)."""
    matmuls = sum(node.op_type == "MatMul" for node in model.graph.node)
    broadcasts = 0
    for node in model.graph.node:
        if node.op_type in ELEMENTWISE_OPS:
            out = graph.shape(node.output[0])
            broadcasts += sum(1 for name in node.input if name and out is not None and (shape := graph.shape(name)) is not None
                              and len(shape) < len(out))
    return matmuls, broadcasts


def _gates(report_nodes: list[NodeResult], main: RuleFile, dla: RuleFile | None, target: Target, *, int8: bool,
           has_qdq: bool, opset: int, dynamic: dict[str, str], dla_requested: bool,
           parser_made: tuple[int, int]) -> list[Gate]:
    gates: list[Gate] = []
    if not int8:
        gates += _gate(main, "fast_int8", "n/a", "INT8 not requested")
    elif target.int8:
        gates += _gate(main, "fast_int8", "pass", f"{target.module} has INT8 (CC {target.compute_capability or '-'})")
    else:
        gates += _gate(main, "fast_int8", "fail", f"{target.module} (compute capability {target.compute_capability}) has no fast INT8: build FP16 instead")
    if main.parser is not None:
        low, high = main.parser.opset.min, main.parser.opset.max
        span = f"{low} to {high}" if low and high else (f"up to {high}" if high else f"{low} and up")
        inside = (low is None or opset >= low) and (high is None or opset <= high)
        message = f"opset {opset}; the TensorRT {main.family} parser takes {span}"
        gates += _gate(main, "opset", "pass" if inside else "fail", message + ("" if inside else ": re-export the model with an opset in that range"))
    rejected = [n for n in report_nodes if n.verdict == "unsupported"]
    gates += _gate(main, "parser", "fail" if rejected else "pass",
                   f"{len(rejected)} node(s) rejected: {_node_list(rejected)}" if rejected else "every node is taken")
    grouped = [n for n in report_nodes if any(r.rule == "gpu.conv.grouped-int8-channels" for r in n.reasons)]
    gates += _gate(main, "grouped_conv_int8", "warn" if grouped else "pass",
                   f"{len(grouped)} grouped Conv(s) fall back from INT8: {_node_list(grouped)}" if grouped else "no grouped Conv breaks it",
                   blocking=False)
    if int8 and "implicit" not in main.int8_modes and not has_qdq:
        gates += _gate(main, "explicit_int8", "warn",
                       f"{main.title} builds INT8 only from Q/DQ models: the verdicts assume the Q/DQ model `edgeq calibrate` writes; this model as is gets no INT8 layer",
                       blocking=False)
    elif int8:
        gates += _gate(main, "explicit_int8", "pass", "explicit (Q/DQ) INT8" if has_qdq else "implicit INT8 from a calibration cache")
    matmuls, broadcasts = parser_made
    version = target.trt_version
    if int8 and not has_qdq and "implicit" in main.int8_modes and version is not None and version[0] >= 10 and matmuls:
        gates += _gate(main, "implicit_parser_tensors", "warn",
                       f"built implicit (calibration cache), {matmuls} MatMul node(s) and {broadcasts} broadcast element-wise "
                       "input(s) read tensors the TensorRT 10 parser makes and names itself (ONNXTRT_Broadcast_N_output...): no "
                       "host-side cache can name them, so those layers fall back ('Missing scale'). Build explicit (Q/DQ): "
                       "build.quantization 'auto' or 'explicit'", blocking=False)
    support = target.dla_support if dla_requested else None
    if support is not None:
        status, message = ("pass", support.reason) if support.available else ("warn", f"{support.reason}: the plan is GPU only")
        gates += _gate(main, "dla_available", status, f"{message} (source: {support.source})", blocking=False)
    if dla is not None:
        shown = ", ".join(f"{k} is {v}" for k, v in dynamic.items())
        gates += _gate(dla, "dla_static_shapes", "fail" if dynamic else "pass",
                       f"dynamic input shape ({shown}): give static shapes (a recipe's inputs) to use the DLA" if dynamic else "every input is static")
        bad_qdq = has_qdq and not dla.accepts_qdq
        gates += _gate(dla, "dla_qdq", "fail" if bad_qdq else "pass",
                       f"{dla.title} does not accept Q/DQ networks: use the calibration cache with the FP32 model" if bad_qdq else
                       ("Q/DQ accepted" if has_qdq else "implicit INT8 from a calibration cache"))
    return gates


def check_model(model: onnx.ModelProto, target: Target, *, dla_core: int | None = None, int8: bool = True,
                name: str | None = None, quantization: str | None = None) -> CheckReport:
    """Check every node of a shape-inferred ``model`` against ``target``'s rules (and its DLA's, with ``dla_core``).

    ``quantization``: the INT8 path deploy will take (``explicit`` or ``implicit``; by default what the rules allow).
    """
    main = rules.select(target, "main")
    dla = None
    if dla_core is not None:
        if target.dla_cores == 0:
            raise InputError(f"target '{target.name}' ({target.module}) has no DLA: drop --dla or pick a target with DLA cores")
        if not 0 <= dla_core < target.dla_cores:
            raise InputError(f"--dla-core {dla_core}: target '{target.name}' has DLA cores 0 to {target.dla_cores - 1}")
        if target.usable_dla_cores:
            dla = rules.select(target, "dla")
    graph = GraphIndex(model)
    opset = model_io.opset(model)
    has_qdq = any(n.op_type in QDQ_OPS for n in model.graph.node)
    int8_blocked = None
    if not int8:
        int8_blocked = "INT8 not requested: runs in FP16/FP32"
    elif not target.int8:
        int8_blocked = f"no fast INT8 on compute capability {target.compute_capability}: runs in FP16"
    dynamic = {i: describe_dims(graph.shape(i)) for i in graph.inputs if graph.static_shape(i) is None}

    nodes: list[NodeResult] = []
    for index, node in enumerate(model.graph.node):
        ctx = NodeContext(node, graph, target, opset)
        result = NodeResult(name=node.name or f"{node.op_type}_{index}", op=node.op_type, verdict="int8", macs=node_macs(ctx))
        _gpu_verdict(main, ctx, result, int8_blocked)
        if dla is not None and result.verdict != "unsupported" and not _is_folded(main, ctx):
            _dla_verdict(dla, ctx, result)
        nodes.append(result)

    explicit = has_qdq or "implicit" not in main.int8_modes or quantization == "explicit"
    return CheckReport(
        model=name or model.graph.name or "model",
        target=target.name,
        engine=f"TensorRT {target.tensorrt}" if target.tensorrt else "ONNX Runtime (CPU)",
        rule_files=[main.id] + ([dla.id] if dla else []),
        opset=opset,
        int8=int8,
        quantization="explicit" if explicit else "implicit",
        dla_core=dla_core if dla is not None else None,
        nodes=nodes,
        gates=_gates(nodes, main, dla, target, int8=int8, has_qdq=has_qdq, opset=opset, dynamic=dynamic,
                     dla_requested=dla_core is not None, parser_made=_parser_made_tensors(model, graph)),
        shares=mac_shares(nodes, with_dla=dla is not None),
        dynamic_inputs=dynamic,
    )
