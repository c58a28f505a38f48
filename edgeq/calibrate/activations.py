"""ONNX Runtime on the CPU with every activation tensor of the graph exposed as an output."""

from __future__ import annotations

from collections import deque

import numpy as np
import onnx
import onnxruntime as ort

from edgeq.calibrate.portable import without_cpu_dependent_ops
from edgeq.device.batches import NO_AXIS, run_batched
from edgeq.errors import InputError
from edgeq.graph import GraphIndex

# ONNX Runtime's graph transformers whose kernels give other bits on other CPUs, by the names ONNX Runtime registers
# them under (microsoft/onnxruntime, onnxruntime/core/optimizer/nchwc_transformer.h: GraphTransformer("NchwcTransformer");
# conv_add_act_fusion.cc: SelectorActionTransformer{"ConvAddActivationFusion", ...}, whose FusedConv with a sum input
# changed the statistics of tests/calibrate_nets.py::wide_state_net under qemu's Haswell). ONNX Runtime ignores a name it
# does not know: tests/test_calibrate_portable.py checks that these take effect.
CPU_DEPENDENT_OPTIMIZERS = ("NchwcTransformer", "ConvAddActivationFusion")


def activation_tensors(model: onnx.ModelProto) -> list[str]:
    """The float32 activations, in graph order: network inputs, then each node output.

    Left out: initializers, Constant outputs, and tensors computed only from constants (TensorRT
    folds them; they need no scale).
    """
    index = GraphIndex(model)
    names = [*index.inputs, *(out for node in model.graph.node for out in node.output if out)]
    return [n for n in dict.fromkeys(names) if n not in index.data_independent and index.elem_type(n) == onnx.TensorProto.FLOAT]


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs also include ``names`` (Polygraphy's output marking)."""
    from polygraphy import config
    from polygraphy.backend.onnx import modify_outputs
    from polygraphy.logger import G_LOGGER

    config.AUTOINSTALL_DEPS = False  # never let Polygraphy pip-install anything (above all, TensorRT)
    G_LOGGER.module_severity = G_LOGGER.ERROR
    present = list(GraphIndex(model).outputs)
    return modify_outputs(model, outputs=[*present, *(n for n in names if n not in present)], copy=True)


def session(model: onnx.ModelProto | bytes, *, threads: int = 0, portable: bool = False) -> ort.InferenceSession:
    """A CPU session whose threads never spin; one clear InputError if ONNX Runtime cannot load the model.

    ``threads``: intra-op threads, the calling thread included (0: ONNX Runtime's default, one per core).
    ``portable``: the outputs' bits must not depend on the CPU, because they become calibration statistics
    (activations exposed as outputs, recurrent state fed into the calibration data) or the predicted accuracy
    (the FP32 reference and the INT8 host model of validation). Then ONNX Runtime's NCHWc layout transformer is
    off: its kernels block channels by the CPU's vector width (8 floats with AVX2, 16 with AVX-512), which changes
    the sums' rounding from one x86 CPU to the next (``tests/test_calibrate_portable.py`` runs both under qemu),
    and they would also convert every exposed tensor back to NCHW (about 5x slower on a SqueezeNet). The other
    optimizations stay, the integer layouts of an INT8 model among them. Softmax and LogSoftmax are written out in
    portable ops (:func:`edgeq.calibrate.portable.without_cpu_dependent_ops`).
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # operators run one after the other (the default sequential mode)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        data = _portable_bytes(model) if portable else model if isinstance(model, bytes) else model.SerializeToString()
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(CPU_DEPENDENT_OPTIMIZERS if portable else ()))
    except Exception as exc:  # noqa: BLE001 (ONNX Runtime raises its own exception types)
        raise InputError(f"ONNX Runtime cannot load the model: {exc}") from None


def _portable_bytes(model: onnx.ModelProto | bytes) -> bytes:
    """``model``'s bytes with Softmax and LogSoftmax written out (the bytes as given when it has none). Bytes are
    parsed into a proto of our own, written out in place; a given proto is copied (the caller keeps it). Either is
    gone when this returns, before ONNX Runtime reads the bytes: a portable session of a 187 MB model with a Softmax,
    given as bytes, peaked at 757 MB over them with the copy and the proto alive, and at 570 MB so."""
    if not isinstance(model, bytes):
        return without_cpu_dependent_ops(model).SerializeToString()
    parsed = onnx.load_from_string(model)
    nodes = len(parsed.graph.node)
    without_cpu_dependent_ops(parsed, in_place=True)  # writing an op out adds nodes
    return model if len(parsed.graph.node) == nodes else parsed.SerializeToString()


def rows(x: np.ndarray | dict[str, np.ndarray]) -> int:
    """Samples in one batch: of the array, or of the first input of a feed ``{input name: array}`` (the data
    set's input, which :class:`edgeq.feeds.Feeds` puts first, samples on axis 0)."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _feed(sess: ort.InferenceSession, x: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of ``x`` the session takes, by input name; a bare array only for a single-input model."""
    names = [i.name for i in sess.get_inputs()]
    if isinstance(x, dict):
        return {k: v for k, v in x.items() if k in names}
    if len(names) != 1:
        raise InputError(f"the model has {len(names)} inputs ({', '.join(names)}): feed every input by name, not one array")
    return {names[0]: x}


def _fixed_batch(sess: ort.InferenceSession, feed: dict[str, np.ndarray]) -> int | None:
    """The batch size the model fixes for ``feed``'s samples (the first dim of its first input, the data set's), or
    None when that dim is dynamic."""
    first = next(iter(feed), None)
    shape = next((i.shape for i in sess.get_inputs() if i.name == first), None)
    dim = shape[0] if shape else None
    return dim if isinstance(dim, int) and dim > 0 else None


def _sample_axis(shape: list[int | str | None], array: np.ndarray, batch: int, total: int) -> int:
    """Where ``array`` holds its ``total`` samples: the axis the model fixes at ``batch`` and the array holds ``total``
    on (NO_AXIS: fed whole, such as a constant input, whose array has the model's shape)."""
    return next((i for i, dim in enumerate(shape) if dim == batch and i < array.ndim and array.shape[i] == total), NO_AXIS)


def run(sess: ort.InferenceSession, x: np.ndarray | dict[str, np.ndarray], names: list[str] | None = None) -> list[np.ndarray]:
    """Run one batch through a session: the named outputs (all when None), in that order.

    ``x``: the array of a single-input model, or every input by name (each at its batch axis, as the model takes
    it; the data set's first, see :func:`rows`). A model whose batch size is fixed (:func:`_fixed_batch`) is fed in
    slices of that size: each input on the axis the model fixes at that size (constants whole), a short last slice
    padded, and the padding dropped from the outputs, whose samples must be on axis 0.
    """
    feed = _feed(sess, x)
    batch, total = _fixed_batch(sess, feed), rows(feed) if feed else 0
    if batch is None or batch == total:
        try:
            return sess.run(names, feed)
        except Exception as exc:  # noqa: BLE001 (ONNX Runtime raises its own exception types)
            shapes = ", ".join(f"'{k}' {list(v.shape)}" for k, v in feed.items())
            raise InputError(f"ONNX Runtime failed on inputs {shapes}: {exc}") from None
    for output in sess.get_outputs():
        first_dim = output.shape[0] if output.shape else None
        if (names is None or output.name in names) and isinstance(first_dim, int) and first_dim != batch:
            raise InputError(f"output '{output.name}' {output.shape} has no samples on axis 0, and the model's batch is fixed at"
                             f" {batch}: edgeq cannot run {total} samples through it in slices; export the model with a dynamic"
                             " batch dimension")
    dims = {i.name: i.shape for i in sess.get_inputs()}
    axes = {name: _sample_axis(dims[name], array, batch, total) for name, array in feed.items()}
    wanted = names or [o.name for o in sess.get_outputs()]
    return run_batched(lambda part: run(sess, part, names), feed, axes, [0] * len(wanted), batch)


class RecycledRun:
    """:func:`run` for a stream of batches whose outputs ONNX Runtime writes into arrays it returned before.

    Each call's outputs stay valid until the call after next, so a caller may read one batch's outputs
    while the next batch runs. The call after that binds the older arrays as its output buffers (IOBinding),
    so ONNX Runtime neither allocates new output tensors nor copies them into new numpy arrays: on a
    SqueezeNet with every activation exposed that is about 15 % of the run's CPU time, and the memory those
    outputs hold stays two batches' worth. An output that is a model input is the fed array itself (ONNX
    Runtime hands the input back and leaves a bound buffer alone). A batch of another size and a model with
    a fixed batch size run as plain :func:`run`, and so do all batches of a model with an output whose shape
    may follow the data (a symbolic dimension after the first) or after a bound run failed (run again the
    plain way, which raises the error if there is one).
    """

    def __init__(self, sess: ort.InferenceSession, names: list[str]) -> None:
        self.sess, self.names = sess, names
        inputs = {i.name for i in sess.get_inputs()}
        self.computed = [name for name in names if name not in inputs]
        self.recent: deque[tuple[int, list[np.ndarray]]] = deque(maxlen=2)  # the last two calls' rows and outputs
        declared = {o.name: o for o in sess.get_outputs()}
        self.recycling = all(declared[name].type in _NUMPY_TYPES and _fixed_but_batch(declared[name].shape)
                             for name in self.computed)

    def __call__(self, x: np.ndarray | dict[str, np.ndarray]) -> list[np.ndarray]:
        feed = _feed(self.sess, x)
        count, batch = rows(feed), _fixed_batch(self.sess, feed)
        spare = self.recent[0] if len(self.recent) == 2 and self.recent[0][0] == count else None
        if self.recycling and (batch is None or batch == count) and spare is not None:
            computed = self._bound(feed, spare[1])
        else:
            computed = run(self.sess, feed, self.computed)
            self.recycling &= all(a.flags.c_contiguous and a.flags.writeable for a in computed)
        self.recent.append((count, computed))
        by_name = dict(zip(self.computed, computed, strict=True))
        return [by_name[name] if name in by_name else feed[name] for name in self.names]

    def _bound(self, feed: dict[str, np.ndarray], buffers: list[np.ndarray]) -> list[np.ndarray]:
        binding = self.sess.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name, buffer in zip(self.computed, buffers, strict=True):
            binding.bind_output(name, "cpu", 0, buffer.dtype, list(buffer.shape), buffer.ctypes.data)
        try:
            self.sess.run_with_iobinding(binding)
        except Exception:  # noqa: BLE001 (ONNX Runtime raises its own exception types)
            # an output's shape follows the data (its check refuses the buffer): allocate from now on; a batch
            # that fails anyway fails again in the plain run, with its error
            self.recycling = False
            return run(self.sess, feed, self.computed)
        return buffers


def _fixed_but_batch(shape: list[int | str | None]) -> bool:
    """Whether a declared output shape fixes every dimension but the first."""
    return all(isinstance(dim, int) for dim in shape[1:])


_NUMPY_TYPES = frozenset(  # ONNX Runtime's names of the tensor types a numpy buffer can be bound for
    f"tensor({t})" for t in ("float", "double", "float16", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                             "uint64", "bool")
)
