"""ONNX Runtime on the CPU with every activation tensor of the graph exposed as an output."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort

from edgeq.errors import InputError


def _float_tensors(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> elem type, for every typed tensor of the main graph."""
    graph = model.graph
    types = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


def activation_tensors(model: onnx.ModelProto) -> list[str]:
    """The float32 activations, in graph order: network inputs, then each node output.

    Left out: initializers, Constant outputs, and tensors computed only from constants (TensorRT
    folds them; they need no scale).
    """
    graph = model.graph
    types = _float_tensors(model)
    constant = {init.name for init in graph.initializer}
    names: list[str] = [i.name for i in graph.input if i.name not in constant]
    for node in graph.node:
        if node.op_type == "Constant" or all(not i or i in constant for i in node.input):
            constant.update(o for o in node.output if o)
            continue
        names += [o for o in node.output if o]
    return [n for n in dict.fromkeys(names) if types.get(n) == onnx.TensorProto.FLOAT]


def sample_bytes(model: onnx.ModelProto, names: list[str]) -> int:
    """Bytes of ``names`` for one sample (float32), from the inferred shapes without their first (batch) dim.

    A tensor whose shape is not fully known counts as large as the largest known one.
    """
    graph = model.graph
    shapes = {info.name: info.type.tensor_type.shape for info in [*graph.input, *graph.value_info, *graph.output]}
    sizes: list[int | None] = []
    for name in names:
        shape = shapes.get(name)
        dims = list(shape.dim)[1:] if shape is not None and shape.dim else None
        if dims is not None and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
            sizes.append(math.prod(d.dim_value for d in dims) * 4)
        else:
            sizes.append(None)
    largest = max((size for size in sizes if size is not None), default=4)
    return sum(largest if size is None else size for size in sizes)


def batch_rows(model: onnx.ModelProto, names: list[str], budget: int) -> int:
    """Samples per ONNX Runtime batch so that one batch of ``names`` stays within ``budget`` bytes (at least 1)."""
    return max(1, budget // max(sample_bytes(model, names), 1))


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs also include ``names`` (Polygraphy's output marking)."""
    from polygraphy import config
    from polygraphy.backend.onnx import modify_outputs
    from polygraphy.logger import G_LOGGER

    config.AUTOINSTALL_DEPS = False  # never let Polygraphy pip-install anything (above all, TensorRT)
    G_LOGGER.module_severity = G_LOGGER.ERROR
    present = [o.name for o in model.graph.output]
    return modify_outputs(model, outputs=[*present, *(n for n in names if n not in present)], copy=True)


def session(
    model: onnx.ModelProto | bytes, *, threads: int = 0, exposed: bool = False, config: Mapping[str, str] | None = None
) -> ort.InferenceSession:
    """A CPU session whose threads never spin; one clear InputError if ONNX Runtime cannot load the model.

    ``threads``: intra-op threads, the calling thread included (0: ONNX Runtime's default, one per core).
    ``exposed``: the model has its activations as outputs. Then the NCHWc layout optimizations
    (level ALL) are left out: they would convert every exposed tensor back to NCHW, which made the
    run about 5x slower than with level EXTENDED on a SqueezeNet.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # operators run one after the other (the default sequential mode)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    if exposed:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    data = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 (ONNX Runtime raises its own exception types)
        raise InputError(f"ONNX Runtime cannot load the model: {exc}") from None


def fixed_batch(sess: ort.InferenceSession) -> int | None:
    """The model's fixed batch size (first input's first dim), or None when it is dynamic."""
    dim = sess.get_inputs()[0].shape[0] if sess.get_inputs()[0].shape else None
    return dim if isinstance(dim, int) and dim > 0 else None


def rows(x: np.ndarray | dict[str, np.ndarray]) -> int:
    """Samples in one batch: of the array, or of the first input of a feed ``{input name: array}``."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def run(sess: ort.InferenceSession, x: np.ndarray | dict[str, np.ndarray], names: list[str] | None = None) -> list[np.ndarray]:
    """Run one batch through a session: the named outputs (all when None), in that order.

    ``x``: the first input's array, or every input by name (each at its batch axis, as the model takes it).
    A model whose first input has a fixed batch size is fed in slices of that size (inputs with as many
    rows as the first are sliced on axis 0, others such as constants passed whole); a short last slice is
    padded and the padding dropped from the outputs.
    """
    wanted = {i.name for i in sess.get_inputs()}
    feed = {k: v for k, v in x.items() if k in wanted} if isinstance(x, dict) else {sess.get_inputs()[0].name: x}
    batch, total = fixed_batch(sess), rows(feed) if feed else 0
    if batch is None or batch == total:
        try:
            return sess.run(names, feed)
        except Exception as exc:  # noqa: BLE001 (ONNX Runtime raises its own exception types)
            shapes = ", ".join(f"'{k}' {list(v.shape)}" for k, v in feed.items())
            raise InputError(f"ONNX Runtime failed on inputs {shapes}: {exc}") from None
    pieces = []
    for start in range(0, total, batch):
        part = {}
        for name, array in feed.items():
            if array.ndim and len(array) == total:
                array = array[start : start + batch]
                if len(array) < batch:
                    array = np.concatenate([array, np.zeros((batch - len(array), *array.shape[1:]), array.dtype)])
            part[name] = array
        kept = min(batch, total - start)
        pieces.append([o[:kept] for o in run(sess, part, names)])
    return [np.concatenate(column) for column in zip(*pieces, strict=True)]
