"""Small ONNX networks and recipes for the calibrate tests, built with onnx.helper (no framework needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import yaml
from onnx import TensorProto, helper, numpy_helper


class NetBuilder:
    """Appends nodes and He-initialised weights to one graph."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def _name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def weight(self, shape: tuple[int, ...], fan_in: int) -> str:
        name = self._name("w")
        values = (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        self.inits.append(numpy_helper.from_array(values, name))
        return name

    def bias(self, size: int) -> str:
        name = self._name("b")
        self.inits.append(numpy_helper.from_array((self.rng.standard_normal(size) * 0.1).astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self._name(op.lower() + "_out")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self._name(op), **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        w = self.weight((cout, cin, k, k), cin * k * k)
        y = self.node("Conv", [x, w, self.bias(cout)], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        return self.node("Relu", [y]) if relu else y

    def model(self, x: str, out: str, in_shape: list, out_shape: list, opset: int = 13) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "net",
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return onnx.shape_inference.infer_shapes(model)


def with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """``model`` with its input and output batch dimension fixed at ``batch``."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for tensor in [*fixed.graph.input, *fixed.graph.output]:
        tensor.type.tensor_type.shape.dim[0].dim_value = batch
    del fixed.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(fixed)


def fire_net(seed: int = 0, classes: int = 4, size: int = 32) -> onnx.ModelProto:
    """A SqueezeNet-style net: conv, max-pool, one fire module (concat), conv classifier, global pool."""
    b = NetBuilder(seed)
    x = b.conv("data", 3, 8, 3, stride=2)
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    squeeze = b.conv(x, 8, 4, 1)
    x = b.node("Concat", [b.conv(squeeze, 4, 8, 1), b.conv(squeeze, 4, 8, 3)], axis=1)
    x = b.conv(x, 16, classes, 1)
    x = b.node("GlobalAveragePool", [x])
    x = b.node("Flatten", [x], axis=1)
    return b.model("data", x, ["N", 3, size, size], ["N", classes])


def capped_fire_net(seed: int = 0, classes: int = 4, size: int = 32) -> onnx.ModelProto:
    """:func:`fire_net` whose first conv is capped by Clip(0, 6) (ReLU6): an outlier in the input widens the input's
    range only, so keeping that one conv in float repairs what min-max on the outlier breaks."""
    b = NetBuilder(seed)
    b.inits += [numpy_helper.from_array(np.array(0.0, np.float32), "zero"), numpy_helper.from_array(np.array(6.0, np.float32), "six")]
    x = b.node("Clip", [b.conv("data", 3, 8, 3, stride=2, relu=False), "zero", "six"])
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    squeeze = b.conv(x, 8, 4, 1)
    x = b.node("Concat", [b.conv(squeeze, 4, 8, 1), b.conv(squeeze, 4, 8, 3)], axis=1)
    x = b.conv(x, 16, classes, 1)
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    return b.model("data", x, ["N", 3, size, size], ["N", classes])


def residual_net(seed: int = 0, classes: int = 4, size: int = 16) -> onnx.ModelProto:
    """conv -> conv -> Add(skip) -> relu -> global pool -> Gemm (transB=1)."""
    b = NetBuilder(seed)
    stem = b.conv("data", 3, 8, 3)
    branch = b.conv(b.conv(stem, 8, 8, 3), 8, 8, 3, relu=False)
    x = b.node("Relu", [b.node("Add", [branch, stem])])
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    x = b.node("Gemm", [x, b.weight((classes, 8), 8), b.bias(classes)], transB=1)
    return b.model("data", x, ["N", 3, size, size], ["N", classes])


def resnet_net(seed: int = 0, classes: int = 4, size: int = 16) -> onnx.ModelProto:
    """ResNet basic blocks: stem, an identity block (Add with the stem), a strided block whose skip is a 1x1 conv."""
    b = NetBuilder(seed)
    stem = b.conv("data", 3, 8, 3)
    identity = b.node("Relu", [b.node("Add", [b.conv(b.conv(stem, 8, 8, 3), 8, 8, 3, relu=False), stem])])
    main = b.conv(b.conv(identity, 8, 16, 3, stride=2), 16, 16, 3, relu=False)
    x = b.node("Relu", [b.node("Add", [main, b.conv(identity, 8, 16, 1, stride=2, relu=False)])])
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    x = b.node("Gemm", [x, b.weight((classes, 16), 16), b.bias(classes)], transB=1)
    return b.model("data", x, ["N", 3, size, size], ["N", classes])


def wide_state_net(seed: int = 0, classes: int = 4, size: int = 32) -> onnx.ModelProto:
    """A recurrent net whose channels are multiples of 16 (so ONNX Runtime's NCHWc kernels take every conv at level
    ALL, with the CPU's block size): input ``data`` and state ``h`` [N, 32, size/2, size/2]; a strided conv, then
    ``h_out = SiLU(conv3x3(x) + h / 2)`` (288 products a sum), fed back as the next sample's ``h``, then a 1x1 conv,
    attention pooling (a Softmax over each channel's size^2/4 positions weighs them) and Gemm for ``scores``."""
    b = NetBuilder(seed)
    b.inits += [numpy_helper.from_array(np.array(0.5, np.float32), "half"),
                numpy_helper.from_array(np.array([0, 64, -1], np.int64), "rows"), numpy_helper.from_array(np.array([-1], np.int64), "last")]
    x = b.conv("data", 3, 32, 3, stride=2)
    y = b.node("Add", [b.conv(x, 32, 32, 3, relu=False), b.node("Mul", ["h", "half"])])
    b.nodes.append(helper.make_node("Mul", [y, b.node("Sigmoid", [y])], ["h_out"], name="silu"))
    x = b.node("Reshape", [b.conv("h_out", 32, 64, 1), "rows"])
    x = b.node("ReduceSum", [b.node("Mul", [b.node("Softmax", [x], axis=-1), x]), "last"], keepdims=0)
    scores = b.node("Gemm", [x, b.weight((classes, 64), 64), b.bias(classes)], transB=1)
    state = ["N", 32, size // 2, size // 2]
    graph = helper.make_graph(
        b.nodes,
        "wide_state",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, size, size]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, state)],
        [helper.make_tensor_value_info(scores, TensorProto.FLOAT, ["N", classes]),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, state)],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)


def deconv_net(seed: int = 0) -> onnx.ModelProto:
    """conv -> ConvTranspose (weights [Cin, Cout, k, k]) -> MatMul with a constant."""
    b = NetBuilder(seed)
    x = b.conv("data", 3, 6, 3)
    w = b.weight((6, 4, 2, 2), 6 * 4)
    x = b.node("ConvTranspose", [x, w], kernel_shape=[2, 2], strides=[2, 2])
    x = b.node("MatMul", [x, b.weight((16, 5), 16)])
    return b.model("data", x, ["N", 3, 8, 8], ["N", 4, 16, 5])


def scores(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name, batch = sess.get_inputs()[0].name, sess.get_inputs()[0].shape[0]
    if isinstance(batch, int):  # a fixed batch: that many samples at a time
        return np.concatenate([sess.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])
    return sess.run(None, {name: x})[0]


def images(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """Noise around a per-sample colour: the nets' outputs (and so their top-1) then vary from sample to sample."""
    colour = rng.standard_normal((count, 3, 1, 1)) * 2.0
    return (rng.standard_normal((count, 3, size, size)) + colour).astype(np.float32)


def write_recipe(folder: Path, model: onnx.ModelProto, *, samples: int = 64, val_samples: int = 48,
                 size: int = 32, seed: int = 0, **overrides) -> Path:
    """model.onnx, cal.npz and val.npz (labels = the FP32 model's own top-1) and recipe.yaml in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    rng = np.random.default_rng(seed)
    cal, val = images(rng, samples, size), images(rng, val_samples, size)
    np.savez(folder / "cal.npz", x=cal)
    np.savez(folder / "val.npz", x=val, labels=scores(model, val).argmax(axis=1))
    recipe = {
        "name": "tiny",
        "model": "model.onnx",
        "inputs": [{"name": "data", "shape": ["N", 3, size, size]}],
        "calibration": {"path": "cal.npz", "samples": samples, "batch_size": 16},
        "validation": {"path": "val.npz"},
        "budget": {"accuracy_drop": 5.0},
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            recipe.setdefault(section, {})[field] = value
        else:
            recipe[section] = value
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path
