"""Which bits of the calibration's FP32 runs depend on the CPU: this machine against emulated CPUs.

Runs the same probes natively and under qemu-user, and prints, per probe, how many outputs differ in any bit:

- single ops (Exp, Softmax, Sigmoid, LayerNormalization, MatMul, ...) on ONNX Runtime at level EXTENDED;
- every activation of a model exposed, at level EXTENDED, at level ALL, and through edgeq's portable session
  (``activations.session(portable=True)``, what the statistics run on);
- the KL search's divergences (``ranges.kl_divergences``), and numpy's float64 log, exp, sums and rounding.

Emulated CPUs: ``x86-avx2`` (``qemu-x86_64 -cpu Haswell``: AVX2, no AVX-512; Debian's qemu-user) and, given an
aarch64 root file system with Python and a folder of aarch64 site-packages (numpy, onnxruntime, onnx, edgeq's
dependencies: unzipped wheels), ``aarch64`` (``qemu-aarch64``, inside a mount namespace whose
/sys/devices/system/cpu is empty: ONNX Runtime's cpuinfo crashes on the host's x86 topology there). Needs root
for that namespace. Emulation is slow: minutes per field model.

    python bench/cpu_portability.py                                  # ops, KL search, the example model
    python bench/cpu_portability.py --models example yolov8n ppocr-rec --arm-root /tmp/arm64 --arm-site /tmp/armsite
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "recipes/squeezenet-digits/recipe.yaml"
OPS = {  # name: (op, attributes, opset, input kind)
    "Exp": ("Exp", {}, 13, "any"), "Softmax": ("Softmax", {"axis": -1}, 13, "any"),
    "LogSoftmax": ("LogSoftmax", {"axis": -1}, 13, "any"), "Sigmoid": ("Sigmoid", {}, 13, "any"),
    "Tanh": ("Tanh", {}, 13, "any"), "Erf": ("Erf", {}, 13, "any"), "Gelu": ("Gelu", {}, 20, "any"),
    "Gelu tanh": ("Gelu", {"approximate": "tanh"}, 20, "any"), "HardSwish": ("HardSwish", {}, 14, "any"),
    "Softplus": ("Softplus", {}, 13, "any"), "Log": ("Log", {}, 13, "positive"), "Sqrt": ("Sqrt", {}, 13, "positive"),
    "Reciprocal": ("Reciprocal", {}, 13, "positive"), "ReduceMean": ("ReduceMean", {"axes": [-1]}, 13, "any"),
    "ReduceL2": ("ReduceL2", {"axes": [-1]}, 13, "any"), "LayerNormalization": ("LayerNormalization", {"axis": -1}, 17, "any"),
    "MatMul": ("MatMul", {}, 13, "any"),
}


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _op_model(op: str, attributes: dict, opset: int, rng: np.random.Generator) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    constants = []
    if op == "LayerNormalization":
        constants = [numpy_helper.from_array(rng.standard_normal(37).astype(np.float32), n) for n in ("gamma", "beta")]
    elif op == "MatMul":
        constants = [numpy_helper.from_array(rng.standard_normal((37, 300)).astype(np.float32), "w")]
    extra = [c.name for c in constants]
    graph = helper.make_graph([helper.make_node(op, ["x", *extra], ["y"], **attributes)], op,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model.SerializeToString()


def _session(model: bytes, level: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def worker(inputs: Path, out: Path) -> None:
    """Every probe's digests, on this CPU."""
    import onnx

    from edgeq.calibrate import activations
    from edgeq.calibrate.ranges import kl_divergences

    found: dict[str, dict[str, str]] = {}
    data = np.load(inputs)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 64, 37)) * 3).astype(np.float32)
    found["ops"] = {name: _digest(_session(_op_model(op, attributes, opset, rng), "EXTENDED").run(
        None, {"x": np.abs(x) + 0.1 if kind == "positive" else x})[0]) for name, (op, attributes, opset, kind) in OPS.items()}
    values = np.ldexp(rng.uniform(0.5, 1.0, 100_000), rng.integers(-1000, 1000, 100_000))
    rows = rng.standard_normal((128, 2047)) * 1e3  # what the MSE and KL searches sum
    found["numpy"] = {"np.log float64": _digest(np.log(values)), "np.exp float64": _digest(np.exp(rng.uniform(-700, 700, 100_000))),
                      "np.sum float64 rows": _digest(rows.sum(axis=1)), "np.cumsum float64": _digest(np.cumsum(rows.ravel())),
                      "np.rint / * float64": _digest(np.rint(rows / 0.37) * 0.37)}
    found["kl"] = {f"histogram {i}": _digest(kl_divergences(data[f"hist{i}"])[1]) for i in range(int(data["histograms"]))}
    for name in data["models"]:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(data[f"{name}_path"])))
        exposed = activations.with_outputs(model, activations.activation_tensors(model))
        feed = {str(data[f"{name}_input"]): data[f"{name}_x"]}
        for level in ("EXTENDED", "ALL", "portable"):
            sess = activations.session(exposed, threads=1, portable=True) if level == "portable" else _session(
                exposed.SerializeToString(), level)
            names = [o.name for o in sess.get_outputs()]
            found[f"{name} {level}"] = dict(zip(names, map(_digest, sess.run(None, feed)), strict=True))
    out.write_text(json.dumps(found))


def _inputs(models: list[str], folder: Path) -> Path:
    """The probes' inputs, made here once (the emulated CPUs get the same arrays)."""
    sys.path.insert(0, str(ROOT))
    arrays: dict[str, object] = {"models": np.array(models)}
    rng = np.random.default_rng(1)
    histograms = [np.histogram(np.abs(v), 2048)[0] for v in (rng.normal(size=10**5), rng.laplace(size=10**5),
                                                            np.maximum(rng.normal(size=10**5), 0), rng.integers(0, 40, 10**5) ** 3)]
    arrays["histograms"] = np.array(len(histograms))
    arrays.update({f"hist{i}": h for i, h in enumerate(histograms)})
    for name in models:
        if name == "example":
            from edgeq import recipe as recipe_module
            from edgeq.feeds import Feeds

            recipe = recipe_module.load(EXAMPLE)
            batch = next(Feeds(recipe, recipe.calibration, "calibration").batches(4))
            path, (input_name, x) = recipe.model_path, next(iter(batch.items()))
        else:
            from tests import field_data, field_recipes

            package, relative, input_name, _ = field_recipes.MODELS[name]
            path, x = field_data.package_file(package, relative), field_recipes.samples(name, 2, 1)
        arrays.update({f"{name}_path": np.array(str(path)), f"{name}_input": np.array(input_name), f"{name}_x": x})
    target = folder / "inputs.npz"
    np.savez(target, **arrays)
    return target


def _emulated(cpu: str, args: argparse.Namespace, inputs: Path, out: Path) -> list[str] | None:
    script = [str(Path(__file__).resolve()), "--worker", str(inputs), str(out)]
    if cpu == "x86-avx2":
        return None if shutil.which("qemu-x86_64") is None else ["qemu-x86_64", "-cpu", "Haswell", sys.executable, *script]
    if args.arm_root is None or shutil.which("qemu-aarch64") is None:
        return None
    python = f"{args.arm_root}/usr/bin/python3"
    inner = f"mount -t tmpfs none /sys/devices/system/cpu && exec qemu-aarch64 -L {args.arm_root} {python} {' '.join(script)}"
    return ["unshare", "-m", "sh", "-c", inner]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="*", default=["example"], help="example, yolov8n, ppocr-det, ppocr-rec")
    parser.add_argument("--arm-root", help="an aarch64 root file system with Python 3 (debootstrap --arch=arm64)")
    parser.add_argument("--arm-site", help="aarch64 site-packages for that Python (unzipped wheels)")
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        inputs = _inputs(args.models, folder)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, __file__, "--worker", str(inputs), str(folder / "native.json")], check=True, env=env)
        native = json.loads((folder / "native.json").read_text())
        for cpu in ("x86-avx2", "aarch64"):
            out = folder / f"{cpu}.json"
            command = _emulated(cpu, args, inputs, out)
            if command is None:
                print(f"{cpu}: skipped (no qemu, or no --arm-root)")
                continue
            site = f"{ROOT}:{args.arm_site}" if cpu == "aarch64" and args.arm_site else str(ROOT)
            done = subprocess.run(command, env={**env, "PYTHONPATH": site}, capture_output=True, text=True)
            if done.returncode:
                print(f"{cpu}: failed: {done.stderr[-1500:]}")
                continue
            other = json.loads(out.read_text())
            print(f"\n{cpu} against this CPU")
            for probe, digests in native.items():
                if probe in ("ops", "numpy"):
                    same = [k for k in digests if other[probe][k] == digests[k]]
                    print(f"  {probe}: same bits: {', '.join(same) or '-'}; other bits: "
                          f"{', '.join(k for k in digests if k not in same) or '-'}")
                else:
                    differ = sum(other[probe][k] != v for k, v in digests.items())
                    print(f"  {probe}: {differ} of {len(digests)} outputs with other bits")


if __name__ == "__main__":
    main()
