"""How this machine's ONNX Runtime sums u8 x s8 products: ``exact`` or ``saturating``, measured.

ONNX Runtime's u8 x s8 kernels (QLinearConv, MatMulInteger, the fused Q/DQ Conv) multiply uint8
activations by int8 weights with the best instruction the CPU has. With AVX-512 VNNI or AVX-VNNI
(``vpdpbusd``) every product is summed in 32 bits. With AVX2 alone, or AVX-512 without VNNI, the kernels
use ``vpmaddubsw``: two adjacent u8 x s8 products are added in 16 bits *with saturation*, then widened
(microsoft/onnxruntime, onnxruntime/core/mlas/lib/x86_64/QgemmU8S8KernelAvx2.S, macro
MultiplyAccumulateRow: ``vpmaddubsw`` then ``vpmaddwd`` by ones; ConvSymKernelAvx2.S, macro
MultiplyAccumulateRowAvx2, the same pair; the choice per CPU is in onnxruntime/core/mlas/lib/platform.cpp).
255 x 127 + 255 x 127 = 64770 does not fit in 16 bits, so full-range weights clip on those CPUs;
weights of at most 7 bits cannot (2 x 255 x 64 = 32640 <= 32767), which is why ONNX Runtime documents
reduced-range weights for x86 without VNNI.

The decision is measured, not read from CPU flags: :func:`measure` builds a tiny model whose pair sums
overflow 16 bits, runs it on ONNX Runtime with its default optimizations and compares with exact int32
arithmetic in numpy (once per process). ``EDGEQ_INT8_ARITH=exact|saturating`` overrides the verdict so
that every path can be forced on any machine. The model is written as protobuf bytes by hand: the device
may have ONNX Runtime without the ``onnx`` package.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from .errors import AgentError
from .qdq_rewrite import SEVEN_BIT
from .report import Int8Arithmetic, KernelCheck

ENV = "EDGEQ_INT8_ARITH"
VERDICTS = ("exact", "saturating")
_FLAGS = ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8", "asimddp", "i8mm")

# ONNX TensorProto element types
_FLOAT, _UINT8, _INT8, _INT32 = 1, 2, 3, 6
_ONNX_TYPE = {np.dtype(np.float32): _FLOAT, np.dtype(np.uint8): _UINT8, np.dtype(np.int8): _INT8,
              np.dtype(np.int32): _INT32}


# -- a minimal protobuf writer for the ONNX messages the probe needs (onnx/onnx.proto field numbers) --

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def _tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims=1, data_type=2, name=8, raw_data=9 (little-endian)."""
    dims = b"".join(_int(1, d) for d in array.shape)
    raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    return dims + _int(2, _ONNX_TYPE[array.dtype]) + _str(8, name) + _bytes(9, raw)


def _value_info(name: str, elem_type: int, shape: Sequence[int]) -> bytes:
    """ValueInfoProto name=1, type=2 -> TypeProto.tensor_type=1 -> elem_type=1, shape=2 -> dim=1 -> dim_value=1."""
    dims = b"".join(_bytes(1, _int(1, d)) for d in shape)
    return _str(1, name) + _bytes(2, _bytes(1, _int(1, elem_type) + _bytes(2, dims)))


def _node(op_type: str, inputs: Sequence[str], outputs: Sequence[str]) -> bytes:
    """NodeProto: input=1, output=2, name=3, op_type=4."""
    return b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs) + _str(3, outputs[0]) + _str(4, op_type)


def _model(nodes: List[bytes], initializers: Dict[str, np.ndarray], inputs: List[bytes], outputs: List[bytes]) -> bytes:
    """ModelProto (ir_version=1: 7, opset_import=8: opset 13, graph=7) around GraphProto (node=1, name=2,
    initializer=5, input=11, output=12)."""
    graph = (b"".join(_bytes(1, n) for n in nodes) + _str(2, "edgeq_int8_probe")
             + b"".join(_bytes(5, _tensor(k, v)) for k, v in initializers.items())
             + b"".join(_bytes(11, i) for i in inputs) + b"".join(_bytes(12, o) for o in outputs))
    return _int(1, 7) + _str(2, "edgeq") + _bytes(7, graph) + _bytes(8, _str(1, "") + _int(2, 13))


# -- the probe's inputs and the two ways of summing them --

CHANNELS = 32  # K: input channels of the 1x1 convolution, depth of the matrix product


def probe_activations() -> np.ndarray:
    """Four rows of uint8 activations (pixels of the convolution, rows of the matrix product), K wide."""
    k = np.arange(CHANNELS)
    return np.stack([np.full(CHANNELS, 255), np.full(CHANNELS, 200), np.where(k % 2 == 0, 255, 0),
                     np.full(CHANNELS, 3)]).astype(np.uint8)


def probe_weights(largest: int) -> np.ndarray:
    """16 output columns of int8 weights of magnitude up to ``largest``, [K, 16]: all +largest, all -largest,
    alternating +/- (pairs that cancel: never saturate) and half of largest, each pattern four times."""
    k = np.arange(CHANNELS)
    patterns = [np.full(CHANNELS, largest), np.full(CHANNELS, -largest), np.where(k % 2 == 0, largest, -largest),
                np.full(CHANNELS, largest // 2)]
    return np.stack(patterns * 4, axis=1).astype(np.int8)


def exact_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in int32 (the reference arithmetic)."""
    return a.astype(np.int32) @ b.astype(np.int32)


def saturated_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b with products of adjacent k (2i, 2i+1) added in int16 with saturation, as ``vpmaddubsw`` does."""
    products = a.astype(np.int32)[:, :, None] * b.astype(np.int32)[None, :, :]
    pairs = products[:, 0::2, :] + products[:, 1::2, :]
    return np.clip(pairs, -32768, 32767).sum(axis=1).astype(np.int32)


def _requantize(acc: np.ndarray, multiplier: np.ndarray, zero_point: int) -> np.ndarray:
    """QLinearConv's output step: round(acc x multiplier) + zero point, clamped to uint8."""
    scaled = np.rint(acc.astype(np.float32) * multiplier.astype(np.float32))
    return np.clip(scaled + zero_point, 0, 255).astype(np.int32)


def probe_weight_sets() -> Dict[str, np.ndarray]:
    """Full-range weights (they decide the verdict) and 7-bit weights (the reduced-range formulation)."""
    return {"full": probe_weights(127), "seven": probe_weights(SEVEN_BIT)}


def conv_multipliers(w: np.ndarray) -> np.ndarray:
    """Per output channel x_scale x w_scale / y_scale: the largest exact |sum| maps to 120 levels, so exact
    and clipped sums requantize far apart."""
    return (120.0 / np.maximum(np.abs(exact_products(probe_activations(), w)).max(axis=0), 1)).astype(np.float32)


def probe_model() -> Tuple[bytes, Dict[str, np.ndarray]]:
    """The probe's ONNX model and its inputs: per weight set, a 1x1 QLinearConv (uint8 activations, per-channel
    symmetric int8 weights, uint8 output with zero point 128) and a MatMulInteger, both on the same rows."""
    a = probe_activations()
    nodes, inits, outputs = [], {}, []  # type: List[bytes], Dict[str, np.ndarray], List[bytes]
    inits["x_scale"], inits["x_zero"] = np.array(1.0, np.float32), np.array(0, np.uint8)
    inits["y_scale"], inits["y_zero"] = np.array(1.0, np.float32), np.array(128, np.uint8)
    for name, w in probe_weight_sets().items():
        inits[name + "_w"] = np.ascontiguousarray(w.T).reshape(w.shape[1], CHANNELS, 1, 1)
        inits[name + "_w_scale"] = conv_multipliers(w)
        inits[name + "_w_zero"] = np.zeros(w.shape[1], np.int8)
        nodes.append(_node("QLinearConv", ["x", "x_scale", "x_zero", name + "_w", name + "_w_scale", name + "_w_zero",
                                           "y_scale", "y_zero"], [name + "_conv"]))
        outputs.append(_value_info(name + "_conv", _UINT8, (1, w.shape[1], 2, 2)))
        inits[name + "_b"] = w
        nodes.append(_node("MatMulInteger", ["a", name + "_b"], [name + "_matmul"]))
        outputs.append(_value_info(name + "_matmul", _INT32, (a.shape[0], w.shape[1])))
    inputs = [_value_info("x", _UINT8, (1, CHANNELS, 2, 2)), _value_info("a", _UINT8, a.shape)]
    pixels = np.ascontiguousarray(a.T.reshape(1, CHANNELS, 2, 2))  # NCHW: the four rows are a 2x2 image's pixels
    return _model(nodes, inits, inputs, outputs), {"x": pixels, "a": a}


def run_probe_model() -> Dict[str, np.ndarray]:
    """The probe model's outputs on ONNX Runtime (CPU, default graph optimizations, one thread), by name."""
    import onnxruntime as ort

    model, feeds = probe_model()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def _check(kernel: str, got: np.ndarray, exact: np.ndarray, saturated: np.ndarray, tolerance: int) -> KernelCheck:
    error = np.abs(got.astype(np.int64) - exact).max()
    return KernelCheck(kernel=kernel, exact=bool(error <= tolerance), max_error=int(error),
                       matches_saturation=bool(np.abs(got.astype(np.int64) - saturated).max() <= tolerance))


def run_probe() -> Tuple[List[KernelCheck], KernelCheck]:
    """The full-range u8 x s8 checks and the 7-bit weight check, from the probe model's outputs.

    Convolution outputs are requantized to uint8 (one step of rounding allowed: ONNX Runtime and numpy
    may round a tie apart); MatMulInteger outputs are raw int32 and must be equal.
    """
    a, got = probe_activations(), run_probe_model()
    checks = {}
    for name, w in probe_weight_sets().items():
        exact, saturated, multiplier = exact_products(a, w), saturated_products(a, w), conv_multipliers(w)
        conv = got[name + "_conv"].reshape(w.shape[1], 4).T  # back to [row, column]
        checks[name] = [
            _check("QLinearConv u8 x s8", conv, _requantize(exact, multiplier, 128), _requantize(saturated, multiplier, 128), 1),
            _check("MatMulInteger u8 x s8", got[name + "_matmul"], exact, saturated, 0),
        ]
    seven = checks["seven"]
    return checks["full"], KernelCheck("QLinearConv and MatMulInteger u8 x s8, 7-bit weights", all(c.exact for c in seven),
                                       max(c.max_error for c in seven), all(c.matches_saturation for c in seven))


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> List[str]:
    """The CPU's integer dot-product features that matter here (x86 and Arm names), for information."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return []
    found = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            found.update(value.split())
    return [flag for flag in _FLAGS if flag in found]


def forced() -> Optional[str]:
    """The override from ``EDGEQ_INT8_ARITH`` (None when unset); AgentError(USAGE) for any other value."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    if value not in VERDICTS:
        raise AgentError(AgentError.USAGE, f"{ENV}: expected 'exact' or 'saturating', found {value!r}")
    return value


@functools.lru_cache(maxsize=1)
def measure() -> Int8Arithmetic:
    """The probe's verdict on this machine, measured once per process (about 20 ms)."""
    import onnxruntime as ort

    checks, seven = run_probe()
    verdict = "exact" if all(c.exact for c in checks) else "saturating"
    return Int8Arithmetic(verdict=verdict, measured=verdict, forced=None, checks=checks, reduced_range=seven,
                          cpu_flags=cpu_flags(), machine=platform.machine(), onnxruntime=str(ort.__version__))


def int8_arithmetic() -> Int8Arithmetic:
    """The verdict edgeq acts on: the override when set, else the probe's."""
    override = forced()
    measured = measure()
    if override is None:
        return measured
    return Int8Arithmetic(verdict=override, measured=measured.measured, forced=override, checks=measured.checks,
                          reduced_range=measured.reduced_range, cpu_flags=measured.cpu_flags,
                          machine=measured.machine, onnxruntime=measured.onnxruntime)


class Verdict(Protocol):
    """What describe() reads: the device's Int8Arithmetic and the host's wire model of it (edgeq.deploy.wire)."""

    @property
    def verdict(self) -> str: ...
    @property
    def measured(self) -> str: ...
    @property
    def forced(self) -> Optional[str]: ...
    @property
    def machine(self) -> str: ...
    @property
    def onnxruntime(self) -> str: ...


def describe(arithmetic: Verdict) -> str:
    """One line for people: the verdict, where it comes from, the evidence."""
    how = (f"forced by {ENV}={arithmetic.forced} (the probe measured {arithmetic.measured})"
           if arithmetic.forced else "measured by the probe")
    sums = ("every u8 x s8 product summed in 32 bits" if arithmetic.measured == "exact"
            else "adjacent u8 x s8 products added in 16 bits with saturation")
    return f"{arithmetic.verdict}: {how}; ONNX Runtime {arithmetic.onnxruntime} on {arithmetic.machine}: {sums}"
