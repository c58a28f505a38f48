"""The Q/DQ model as the host runs it to predict INT8 accuracy, with the same numbers on every x86 CPU.

The reference arithmetic (TensorRT's, and the Q/DQ model's meaning) multiplies int8 by int8 and sums
without overflow. TensorRT's placement puts Q/DQ pairs on layer inputs only, a pattern ONNX Runtime runs as
float kernels wrapped in (de)quantize ops, about 2x slower than FP32 and with float rounding that depends on
the CPU. :func:`host_model` rewrites it into integer kernels, keeping the quantization grid of every tensor:

1. each weight's QuantizeLinear is folded into its int8 levels (the DequantizeLinear stays, per channel);
2. each activation pair is also put, with the same scale, on the inputs of the Relu, MaxPool and
   Concat ops that lead to it (when nothing else reads those inputs), back to the producing Conv.
   With zero point 0 these ops commute with quantization (q(relu(x)) = relu(q(x)), q(max) = max(q),
   q(concat) = concat(q)), so every tensor that reached a layer input before reaches it unchanged;
3. the activation pairs go to uint8 with zero point 128, the same grid;
4. each ``DequantizeLinear -> Relu -> QuantizeLinear`` chain with one scale and zero point z on both ends
   (step 2 makes one per Relu) becomes ``Clip(q, min=z)`` on the integers (:func:`relu_chains_to_clip`);
5. where this CPU's u8 x s8 kernels saturate (below), the weights go to uint8 with zero point 128 too, the
   same grid (:func:`weights_to_uint8`).

ONNX Runtime then fuses DQ -> Conv -> Q into its integer QLinearConv and Concat into QLinearConcat. Which
integer kernels sum the products exactly depends on the CPU, measured by :mod:`edgeq.device.int8_arith` (or
forced with ``EDGEQ_INT8_ARITH``):

- ``exact`` (AVX-512 VNNI, AVX-VNNI, ...): the u8 x s8 kernels sum every product in 32 bits; steps 1-4.
- ``saturating`` (AVX2 without VNNI, AVX-512 without VNNI): the u8 x s8 kernels add pairs of products in 16
  bits with saturation and would clip. Step 5 selects the u8 x u8 kernels instead, which widen both sides
  to 16 bits and sum pairs of products in 32 (microsoft/onnxruntime, onnxruntime/core/mlas/lib/x86_64/
  QgemmU8U8KernelAvx2.S: MlasGemmU8U8CopyPackAAvx2 zero-extends A with ``vpmovzxbw``, the kernel multiplies
  with ``vpmaddwd``): exact, about 2x the time of the u8 x s8 kernels.

Both paths sum the same integers and requantize them with the same float operations, so they give the same
bits: on the example, over its 539 validation images, the ``exact`` path here (AVX-512 VNNI), the
``saturating`` path here and the ``saturating`` path under ``qemu-x86_64 -cpu Haswell`` (AVX2) print one
sha256 (``tests/test_calibrate_portable.py`` compares the predictions of both CPUs). The session is
portable (:func:`edgeq.calibrate.activations.session`), so layers left in float round alike too.

For the onnxruntime backend (``local``) the prediction runs what that backend builds on this machine
(:func:`edgeq.device.qdq_rewrite.rewrite_model`, with 7-bit weights where the arithmetic saturates), on
ONNX Runtime's default optimizations, as the backend does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.device.errors import AgentError
from edgeq.device.int8_arith import int8_arithmetic
from edgeq.device.qdq_rewrite import activations_to_uint8, fold_weight_quantization, kernels_sentence, rewrite_model
from edgeq.device.report import Int8Arithmetic
from edgeq.errors import InputError
from edgeq.graph import GraphIndex

NORMAL_SCALES = (float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max) / 256)  # (q - z) * s normal
COMMUTING_OPS = frozenset({"Relu", "MaxPool", "Concat"})
U8S8 = "ONNX Runtime's fused u8 x s8 integer kernels (this CPU sums the products exactly)"
U8U8 = ("ONNX Runtime's fused u8 x u8 integer kernels, weights on the uint8 grid (this CPU's u8 x s8 kernels add "
        "product pairs in 16 bits with saturation; its u8 x u8 kernels sum them in 32 bits)")


@dataclass
class HostModel:
    """A model as the host runs it: serialized, what runs it, and whether on portable kernels
    (:func:`edgeq.calibrate.activations.session`)."""

    model: bytes
    kernels: str
    portable: bool = True


def host_arithmetic() -> Int8Arithmetic:
    """This machine's INT8 arithmetic (probe or override); a bad EDGEQ_INT8_ARITH is an InputError."""
    try:
        return int8_arithmetic()
    except AgentError as exc:
        raise InputError(exc.message) from None


def propagate_activation_pairs(graph: onnx.GraphProto) -> int:
    """Repeat each activation pair back through Relu/MaxPool/Concat (step 2), in place; the pairs added."""
    index = GraphIndex(graph)
    constants, outputs = index.initializers, set(index.outputs)
    producer = dict(index.producers)  # a copy: moved outputs are added as the pairs go in
    after: dict[str, list[onnx.NodeProto]] = {}  # producer output -> the pair to emit right after it

    def add_pair(tensor: str, scale: str, zero: str) -> None:
        source = producer[tensor]
        raw = f"{tensor}_host_raw"
        source.output[list(source.output).index(tensor)] = raw
        producer[raw] = source
        after.setdefault(raw, []).extend([
            helper.make_node("QuantizeLinear", [raw, scale, zero], [f"{tensor}_host_q"], name=f"{tensor}_host_QuantizeLinear"),
            helper.make_node("DequantizeLinear", [f"{tensor}_host_q", scale, zero], [tensor], name=f"{tensor}_host_DequantizeLinear"),
        ])

    def walk(tensor: str, scale: str, zero: str) -> None:
        node = producer.get(tensor)
        if node is None or node.op_type not in COMMUTING_OPS:
            return
        inputs = [name for name in node.input if name]
        if any(name in constants or name in outputs or name not in producer or len(index.consumers(name)) != 1 for name in inputs):
            return
        for name in inputs:
            add_pair(name, scale, zero)
            walk(f"{name}_host_raw", scale, zero)

    for node in list(graph.node):
        if node.op_type == "QuantizeLinear" and node.input[0] not in constants:
            walk(node.input[0], node.input[1], node.input[2])
    ordered = []
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            ordered.extend(after.get(out, []))
    del graph.node[:]
    graph.node.extend(ordered)
    return sum(len(pair) for pair in after.values()) // 2


def relu_chains_to_clip(model: onnx.ModelProto) -> int:
    """Replace each DequantizeLinear -> Relu -> QuantizeLinear chain on an 8-bit integer tensor whose two ends
    share one per-tensor scale and zero point z by ``Clip(q, min=z)`` (step 4), in place; the chains replaced.

    Exact: for q >= z, Relu keeps (q - z) * s and quantizing it gives back q, since float32 rounds
    ((q - z) * s) / s within |q - z| * 2**-22 <= 6.1e-5 of q - z; for q < z, Relu gives 0, quantized to z.
    ONNX Runtime's CPU Clip runs on int8 and uint8 from opset 12 (microsoft/onnxruntime,
    docs/OperatorKernels.md, CPUExecutionProvider table, row Clip), where Relu runs on float only.
    """
    if next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0) < 12:
        return 0  # Clip on integers is opset 12 on
    graph = model.graph
    index = GraphIndex(graph)
    outputs = set(index.outputs)

    def grid(node: onnx.NodeProto) -> tuple[float, int, np.dtype] | None:
        """(scale, zero point, integer type) of a per-tensor 8-bit (de)quantize node with constant parameters."""
        if len(node.input) < 3:
            return None
        scale, zero = index.constant(node.input[1]), index.constant(node.input[2])
        if scale is None or zero is None or scale.size != 1 or zero.size != 1 or scale.dtype != np.float32:
            return None
        if zero.dtype not in (np.uint8, np.int8) or not NORMAL_SCALES[0] <= scale.item() <= NORMAL_SCALES[1]:
            return None  # a subnormal (q - z) * s loses bits, a huge one overflows
        return scale.item(), zero.item(), zero.dtype

    def only_reader(tensor: str, node: onnx.NodeProto) -> bool:
        readers = index.consumers(tensor, subgraph_reads=True)
        return tensor not in outputs and len(readers) == 1 and readers[0][0] is node

    dropped: set[int] = set()  # ids of the chains' DequantizeLinear and Relu nodes
    gone: set[str] = set()  # the tensors they wrote
    minimums: set[str] = set()
    clips: dict[int, onnx.NodeProto] = {}  # position of a chain's QuantizeLinear -> the Clip in its place
    for position, quantize in enumerate(graph.node):
        relu = index.producer(quantize.input[0]) if quantize.op_type == "QuantizeLinear" else None
        dequantize = index.producer(relu.input[0]) if relu is not None and relu.op_type == "Relu" else None
        if relu is None or dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        ends = grid(dequantize), grid(quantize)
        if ends[0] is None or ends[0] != ends[1]:
            continue
        if not (only_reader(dequantize.output[0], relu) and only_reader(relu.output[0], quantize)):
            continue
        minimum = f"{quantize.input[2]}_clip_min"
        if minimum not in minimums:
            minimums.add(minimum)
            graph.initializer.append(numpy_helper.from_array(np.array(ends[0][1], ends[0][2]), minimum))
        clips[position] = helper.make_node("Clip", [dequantize.input[0], minimum], [quantize.output[0]], name=f"{quantize.output[0]}_Clip")
        dropped.update((id(dequantize), id(relu)))
        gone.update((dequantize.output[0], relu.output[0]))
    kept = [clips.get(position, node) for position, node in enumerate(graph.node) if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    infos = [info for info in graph.value_info if info.name not in gone]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    return len(clips)


def weights_to_uint8(graph: onnx.GraphProto) -> int:
    """Move each symmetric int8 initializer read by a DequantizeLinear (weights, after step 1) to uint8 with zero
    point 128 (step 5), in place; how many. The grid stays: (w + 128) - 128 = w, per channel as before."""
    values = {init.name: init for init in graph.initializer}
    moved: dict[str, str] = {}  # old initializer name -> its uint8 one (weights and zero points may be read twice)
    weights = 0

    def uint8(name: str, array: np.ndarray) -> str:
        if name not in moved:
            moved[name] = f"{name}_uint8"
            graph.initializer.append(numpy_helper.from_array(array, moved[name]))
        return moved[name]

    for node in graph.node:
        zero_name = node.input[2] if len(node.input) > 2 else ""
        if (node.op_type != "DequantizeLinear" or node.input[0] not in values or node.input[1] not in values
                or (zero_name and zero_name not in values)):
            continue  # not a constant, or a computed scale or zero point
        levels = numpy_helper.to_array(values[node.input[0]])
        if levels.dtype != np.int8 or (zero_name and numpy_helper.to_array(values[zero_name]).any()):
            continue
        weights += node.input[0] not in moved
        scale_shape = numpy_helper.to_array(values[node.input[1]]).shape  # a zero point has its scale's shape
        zero = uint8(zero_name or f"{node.input[0]}_zero_point", np.full(scale_shape, 128, np.uint8))
        node.input[0] = uint8(node.input[0], (levels.astype(np.int16) + 128).astype(np.uint8))
        if zero_name:
            node.input[2] = zero
        else:
            node.input.append(zero)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used or init.name not in moved]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return weights


def host_model(qdq: onnx.ModelProto, arithmetic: str) -> HostModel:
    """``qdq`` (TensorRT's placement) as the host runs it on a CPU whose arithmetic is ``arithmetic``."""
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    fold_weight_quantization(model.graph)
    propagate_activation_pairs(model.graph)
    activations_to_uint8(model)
    relu_chains_to_clip(model)
    if arithmetic == "saturating":
        weights_to_uint8(model.graph)
        return HostModel(model.SerializeToString(), U8U8)
    return HostModel(model.SerializeToString(), U8S8)


def ort_model(qdq: onnx.ModelProto, arithmetic: str) -> HostModel:
    """``qdq`` (ONNX Runtime's placement) as the onnxruntime backend builds it on a CPU of ``arithmetic``."""
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    rewrite = rewrite_model(model, reduced_range=arithmetic == "saturating")
    return HostModel(model.SerializeToString(), kernels_sentence(rewrite), portable=False)


def prediction_model(placed: onnx.ModelProto, backend: str, arithmetic: str) -> HostModel:
    """The placed Q/DQ model as the host runs it to predict the INT8 accuracy of ``backend``."""
    return ort_model(placed, arithmetic) if backend == "onnxruntime" else host_model(placed, arithmetic)
