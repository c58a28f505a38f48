"""Benchmark: `edgeq calibrate` against ONNX Runtime's and ModelOpt's INT8 post-training quantization.

For each model (the example SqueezeNet 1.1 at 227x227, and a heavier variant with Fire modules twice
as wide and random He-initialised weights) and each calibration sample count, every contender runs
in its own subprocess, one at a time:

  fp32          a plain FP32 ONNX Runtime pass over the same samples (the floor)
  edgeq         edgeq.calibrate.pipeline.calibrate (prepare, statistics, ranges, policy, Q/DQ, the
                predicted accuracy on the validation set, writing; layer sensitivity only runs when the
                budget fails); "calib only" in the note column is the same run without the validation
                (and sensitivity) seconds: the anchors predict nothing, so that is the like-for-like time
  ort-entropy   onnxruntime.quantization.quantize_static, Entropy calibrator  } QDQ, symmetric int8
  ort-minmax    onnxruntime.quantization.quantize_static, MinMax calibrator   } activations, per-channel
  modelopt-*    python -m modelopt.onnx.quantization (entropy / max) on CPU   } int8 weights

Each worker resets its peak RSS after its imports (/proc/self/clear_refs) and reports the peak above
that post-import baseline, plus the peak RSS of any child process it waited for (RUSAGE_CHILDREN: a
contender that calibrates in a subprocess is counted in full, imports included). The parent kills a
worker whose process tree's RSS passes --mem-cap-gb (reported as "over cap"). Every Q/DQ model is then scored on the example's validation set: top-1 accuracy (the
example model only; the heavy variant has random weights), agreement with FP32, output cosine.

Usage:
  python bench/calibrate_vs_ort.py --quick          # example model, 64 samples, no ModelOpt (~1 min)
  nice -n 10 python bench/calibrate_vs_ort.py       # both models, 64/256/1024 samples, all contenders
  --example-model PATH                              # another model in the example's place (same input and classes)
ModelOpt runs from its own venv (it needs torch); create it once with
  python -m venv /tmp/modelopt-venv && /tmp/modelopt-venv/bin/pip install torch==2.13.0 nvidia-modelopt==0.47.0 \
      "onnx~=1.21.0" onnx-graphsurgeon "onnxconverter-common~=1.16.0" "onnxruntime~=1.24.2" onnxslim polygraphy \
      ml_dtypes lief cppimport onnxscript
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "recipes" / "squeezenet-digits" / "recipe.yaml"
TARGET = "orin-nano-jp6.2"  # TensorRT 10.3: explicit (Q/DQ) and implicit (cache) INT8
MODELOPT_PYTHON = Path("/tmp/modelopt-venv/bin/python")
BATCH = 16
ANCHORS = ("ort-entropy", "ort-minmax", "modelopt-entropy", "modelopt-max")


# ---------------------------------------------------------------- worker side (one contender per process)


def _status(field_name: str) -> int:
    """A /proc/self/status memory field, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _reset_peak() -> int:
    """Reset the peak-RSS counter (Linux clear_refs 5) and return the post-import baseline RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # without a reset, the peak still includes the imports: reported as is
    return _status("VmRSS")


def _calibration_batches(recipe, samples: int):
    from edgeq.data import Dataset

    spec = recipe.calibration.model_copy(update={"samples": samples})
    dataset = Dataset.from_spec(recipe, spec, "calibration")
    return dataset, (batch.x for batch in dataset.batches(BATCH))


def _bench_recipe(model: Path, samples: int):
    from edgeq import recipe as recipe_module

    base = recipe_module.load(RECIPE)
    return base.model_copy(update={"model": model, "calibration": base.calibration.model_copy(update={"samples": samples})})


def work_fp32(model: Path, samples: int, out: Path) -> dict:
    import onnxruntime as ort

    recipe = _bench_recipe(model, samples)
    baseline = _reset_peak()
    start = time.perf_counter()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    _, batches = _calibration_batches(recipe, samples)
    for x in batches:
        session.run(None, {name: x})
    return {"wall": time.perf_counter() - start, "baseline": baseline}


def work_edgeq(model: Path, samples: int, out: Path) -> dict:
    from edgeq import targets
    from edgeq.calibrate.pipeline import calibrate

    recipe = _bench_recipe(model, samples)
    target = targets.resolve(TARGET)
    baseline = _reset_peak()
    start = time.perf_counter()
    result = calibrate(recipe, target, out=out / "edgeq", progress=False)
    wall = time.perf_counter() - start
    os.replace(result.artifacts.qdq_model, out / "qdq.onnx")
    seconds = result.report.seconds
    extra = seconds.get("validation", 0.0) + seconds.get("sensitivity", 0.0)
    return {"wall": wall, "baseline": baseline, "wall_calibration_only": wall - extra, "seconds": seconds}


class _Reader:
    """onnxruntime CalibrationDataReader over edgeq's lazily read calibration batches."""

    def __init__(self, batches, name: str) -> None:
        self.batches, self.name = batches, name

    def get_next(self):
        x = next(self.batches, None)
        return None if x is None else {self.name: x}


def _work_ort(model: Path, samples: int, out: Path, method: str) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    recipe = _bench_recipe(model, samples)
    baseline = _reset_peak()
    start = time.perf_counter()
    _, batches = _calibration_batches(recipe, samples)
    name = onnx.load(str(model), load_external_data=False).graph.input[0].name
    quantize_static(
        str(model),
        str(out / "qdq.onnx"),
        _Reader(batches, name),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, method),
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibTensorRangeSymmetric": True},
    )
    return {"wall": time.perf_counter() - start, "baseline": baseline}


def work_ort_entropy(model: Path, samples: int, out: Path) -> dict:
    return _work_ort(model, samples, out, "Entropy")


def work_ort_minmax(model: Path, samples: int, out: Path) -> dict:
    return _work_ort(model, samples, out, "MinMax")


def _work_modelopt(model: Path, samples: int, out: Path, method: str) -> dict:
    """ModelOpt's ONNX PTQ entry point (the function behind `python -m modelopt.onnx.quantization`)."""
    import numpy as np
    from modelopt.onnx.quantization import quantize

    data = out / "calibration.npy"  # written by the parent: ModelOpt takes the calibration set as one array
    baseline = _reset_peak()
    start = time.perf_counter()
    quantize(
        onnx_path=str(model),
        quantize_mode="int8",
        calibration_data=np.load(data),
        calibration_method=method,
        calibration_eps=["cpu"],
        output_path=str(out / "qdq.onnx"),
        high_precision_dtype="fp32",
    )
    return {"wall": time.perf_counter() - start, "baseline": baseline}


def work_modelopt_entropy(model: Path, samples: int, out: Path) -> dict:
    return _work_modelopt(model, samples, out, "entropy")


def work_modelopt_max(model: Path, samples: int, out: Path) -> dict:
    return _work_modelopt(model, samples, out, "max")


def worker_main(contender: str, model: Path, samples: int, out: Path) -> None:
    result = globals()["work_" + contender.replace("-", "_")](model, samples, out)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    result["children_peak"] = children
    result["peak_above_baseline"] = _status("VmHWM") - result.pop("baseline") + children
    (out / "result.json").write_text(json.dumps(result))


# ---------------------------------------------------------------- parent side


@dataclass
class Run:
    model: str
    samples: int
    contender: str
    wall: float | None = None
    peak_mb: float | None = None
    error: str = ""
    top1: float | None = None
    agreement: float | None = None
    cosine: float | None = None
    extra: dict = field(default_factory=dict)


def heavy_model(path: Path, width: int = 2, classes: int = 10, seed: int = 0) -> Path:
    """SqueezeNet 1.1 (input data [N,3,227,227], output prob [N,classes]) with every layer ``width`` x wider,
    random He-normal weights. For time and memory only: its predictions mean nothing."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(x: str, cin: int, cout: int, k: int, name: str, stride: int = 1, pad: int = 0) -> str:
        w = rng.normal(0.0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.conv"], name=name, kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4))
        nodes.append(helper.make_node("Relu", [f"{name}.conv"], [f"{name}.relu"], name=f"{name}.relu"))
        return f"{name}.relu"

    def pool(x: str, name: str) -> str:
        nodes.append(helper.make_node("MaxPool", [x], [name], name=name, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1))
        return name

    def fire(x: str, cin: int, squeeze: int, expand: int, name: str) -> tuple[str, int]:
        s = conv(x, cin, squeeze * width, 1, f"{name}.squeeze")
        a = conv(s, squeeze * width, expand * width, 1, f"{name}.expand1x1")
        b = conv(s, squeeze * width, expand * width, 3, f"{name}.expand3x3", pad=1)
        nodes.append(helper.make_node("Concat", [a, b], [f"{name}.concat"], name=f"{name}.concat", axis=1))
        return f"{name}.concat", 2 * expand * width

    x = pool(conv("data", 3, 64 * width, 3, "conv1", stride=2), "pool1")
    channels = 64 * width
    layout = [(16, 64), (16, 64), None, (32, 128), (32, 128), None, (48, 192), (48, 192), (64, 256), (64, 256)]
    for index, fire_widths in enumerate(layout, start=2):
        if fire_widths is None:
            x = pool(x, f"pool{index}")
        else:
            x, channels = fire(x, channels, *fire_widths, f"fire{index}")
    x = conv(x, channels, classes, 1, "classifier")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["logits"], name="flatten"))
    nodes.append(helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=1))
    graph = helper.make_graph(
        nodes, "squeezenet_wide", [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 227, 227])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", classes])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _calibration_npy(model: Path, samples: int, path: Path) -> None:
    """The calibration samples as one array, for ModelOpt (its API takes the whole set at once)."""
    import numpy as np

    from edgeq.data import Dataset

    recipe = _bench_recipe(model, samples)
    spec = recipe.calibration.model_copy(update={"samples": samples})
    dataset = Dataset.from_spec(recipe, spec, "calibration")
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(dataset), 3, 227, 227))
    start = 0
    for batch in dataset.batches(BATCH):
        array[start : start + len(batch.x)] = batch.x
        start += len(batch.x)
    array.flush()
    del array


def _rss(pid: int) -> int:
    """RSS of ``pid`` and all its descendants, in bytes (0 for processes already gone)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += sum(_rss(int(child)) for child in (task / "children").read_text().split())
    except OSError:
        pass
    return total


def run_worker(contender: str, model: Path, samples: int, work: Path, cap_bytes: int, python: str) -> Run:
    """Run one contender in its own process; kill it if it passes the memory cap."""
    label = model.stem
    run = Run(label, samples, contender)
    command = [python, str(Path(__file__).resolve()), "--worker", contender, "--model", str(model), "--samples", str(samples), "--out", str(work)]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    with open(work / "log.txt", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        over_cap = False
        while process.poll() is None:
            if _rss(process.pid) > cap_bytes:
                process.kill()
                over_cap = True
            try:
                process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
    if over_cap:
        run.error = f"over {cap_bytes / 2**30:.0f} GB cap"
    elif process.returncode != 0 or not (work / "result.json").exists():
        tail = (work / "log.txt").read_text().strip().splitlines()[-1:] or ["no output"]
        run.error = f"failed ({tail[0][:80]})"
    else:
        result = json.loads((work / "result.json").read_text())
        run.wall = result.pop("wall")
        run.peak_mb = result.pop("peak_above_baseline") / 2**20
        run.extra = result
    return run


def score(run: Run, qdq: Path, val_x, val_labels, reference, with_labels: bool) -> None:
    """Predicted INT8 quality of one Q/DQ model on the validation set."""
    import numpy as np
    import onnxruntime as ort

    from edgeq.device.compare import cosine, top1_agreement

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(qdq), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = np.concatenate([session.run(None, {name: val_x[i : i + 64]})[0] for i in range(0, len(val_x), 64)])
    run.agreement = 100.0 * top1_agreement(reference, out)
    run.cosine = cosine(reference, out)
    if with_labels:
        run.top1 = float(100.0 * np.mean(np.argmax(out, axis=1) == val_labels))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(runs: list[Run], fp32_top1: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgeq calibrate vs ONNX Runtime / ModelOpt (CPU, 2 cores)")
    for column in ("model", "samples", "contender", "wall s", "peak MB", "top-1 %", "agree %", "cosine", "note"):
        table.add_column(column, justify="left" if column in ("model", "contender", "note") else "right")
    for run in runs:
        notes = [f"calib only {run.extra['wall_calibration_only']:.1f}s"] if "wall_calibration_only" in run.extra else []
        if run.extra.get("children_peak"):
            notes.append(f"incl. child {run.extra['children_peak'] / 2**20:.0f} MB")
        note = run.error or ", ".join(notes)
        table.add_row(run.model, str(run.samples), run.contender, _fmt(run.wall, ".1f"), _fmt(run.peak_mb, ".0f"), _fmt(run.top1, ".1f"), _fmt(run.agreement, ".1f"), _fmt(run.cosine, ".4f"), note)
    console = Console(width=160)
    console.print(table)
    for model, top1 in fp32_top1.items():
        console.print(f"FP32 top-1 of {model} on the validation set: {top1:.1f} %")
    console.print(ratios(runs))


def ratios(runs: list[Run]) -> str:
    """edgeq against each anchor and against the FP32 floor, per model and sample count, with the targets."""
    lines = []
    keyed = {(r.model, r.samples, r.contender): r for r in runs}
    for model, samples in dict.fromkeys((r.model, r.samples) for r in runs):
        edgeq, fp32 = keyed.get((model, samples, "edgeq")), keyed.get((model, samples, "fp32"))
        if edgeq is None or edgeq.wall is None:
            continue
        calib = edgeq.extra.get("wall_calibration_only", edgeq.wall)
        parts = [f"{model} n={samples}:"]
        if fp32 and fp32.wall:
            parts.append(f"edgeq/FP32 floor time {edgeq.wall / fp32.wall:.2f}x (calib only {calib / fp32.wall:.2f}x; target <= 3x)")
        for anchor in ANCHORS:
            other = keyed.get((model, samples, anchor))
            if other and other.wall:
                parts.append(f"vs {anchor}: time {edgeq.wall / other.wall:.2f}x (calib only {calib / other.wall:.2f}x), peak RSS {edgeq.peak_mb / max(other.peak_mb, 1):.2f}x")
            elif other:
                parts.append(f"vs {anchor}: {other.error}")
        entropy = [keyed[k].wall for k in ((model, samples, a) for a in ANCHORS if "entropy" in a) if k in keyed and keyed[k].wall]
        if entropy:
            parts.append(f"vs fastest anchor entropy run: time {edgeq.wall / min(entropy):.2f}x (target <= 0.5x)")
        cosines = [keyed[(model, samples, a)].cosine for a in ANCHORS if (model, samples, a) in keyed]
        cosines = [c for c in cosines if c is not None]
        if cosines and edgeq.cosine is not None:
            parts.append(f"cosine: edgeq {edgeq.cosine:.5f}, anchors' best {max(cosines):.5f} (target: edgeq >= best)")
        lines.append("\n  ".join(parts))
    for model in dict.fromkeys(r.model for r in runs):
        peaks = {r.samples: r.peak_mb for r in runs if r.model == model and r.contender == "edgeq" and r.peak_mb}
        if len(peaks) > 1:
            low, high = min(peaks), max(peaks)
            lines.append(f"{model}: edgeq peak RSS n={high} / n={low}: {peaks[high] / peaks[low]:.2f}x (target: flat)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="example model, 64 samples, no ModelOpt")
    parser.add_argument("--samples", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--models", nargs="+", default=["example", "heavy"], choices=["example", "heavy"])
    parser.add_argument("--contenders", nargs="+", default=["fp32", "edgeq", *ANCHORS])
    parser.add_argument("--example-model", type=Path, help="the example's model (default: the recipe's trained model.onnx)")
    parser.add_argument("--mem-cap-gb", type=float, default=6.0, help="kill a contender whose RSS passes this")
    parser.add_argument("--modelopt-python", default=str(MODELOPT_PYTHON))
    parser.add_argument("--json", type=Path, help="also write every run as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.model, args.samples[0], args.out)
        return
    if args.quick:
        args.samples, args.models = [64], ["example"]
        args.contenders = [c for c in args.contenders if not c.startswith("modelopt")]
    if not Path(args.modelopt_python).exists():
        skipped = [c for c in args.contenders if c.startswith("modelopt")]
        if skipped:
            print(f"ModelOpt venv not found at {args.modelopt_python}: skipping {', '.join(skipped)} (see the module docstring)")
        args.contenders = [c for c in args.contenders if not c.startswith("modelopt")]

    import numpy as np
    import onnxruntime as ort

    from edgeq import recipe as recipe_module
    from edgeq.data import Dataset

    base = recipe_module.load(RECIPE)
    example = args.example_model or base.model_path
    if "example" in args.models and not example.exists():
        sys.exit(f"{example} not found: train it first (recipes/squeezenet-digits/train.py)")
    validation = Dataset.from_spec(base, base.validation, "validation").load()
    runs: list[Run] = []
    fp32_top1: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgeq-bench-") as scratch:
        root = Path(scratch)
        # contenders get a copy: some tools write shape-inferred models next to (or over) their input
        models = {"example": Path(shutil.copy(example, root / "example.onnx")), "heavy": root / "squeezenet_wide2.onnx"}
        if "heavy" in args.models:
            heavy_model(models["heavy"])
        for key in args.models:
            model = models[key]
            session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
            reference = np.concatenate([session.run(None, {"data": validation.x[i : i + 64]})[0] for i in range(0, len(validation.x), 64)])
            if key == "example":
                fp32_top1[model.stem] = float(100.0 * np.mean(np.argmax(reference, axis=1) == validation.labels))
            for samples in args.samples:
                npy = None
                for contender in args.contenders:
                    work = root / f"{key}-{samples}-{contender}"
                    work.mkdir()
                    python = args.modelopt_python if contender.startswith("modelopt") else sys.executable
                    if contender.startswith("modelopt"):
                        if npy is None:
                            npy = root / f"{key}-{samples}.npy"
                            _calibration_npy(model, samples, npy)
                        os.link(npy, work / "calibration.npy")
                    print(f"{key} n={samples} {contender} ...", flush=True)
                    run = run_worker(contender, model, samples, work, int(args.mem_cap_gb * 2**30), python)
                    run.model = key
                    if run.error == "" and (work / "qdq.onnx").exists():
                        score(run, work / "qdq.onnx", validation.x, validation.labels, reference, key == "example")
                    runs.append(run)
                    print(f"  {_fmt(run.wall, '.1f')} s, peak {_fmt(run.peak_mb, '.0f')} MB {run.error}", flush=True)
                if npy is not None:
                    npy.unlink()
    render(runs, fp32_top1)
    if args.json:
        args.json.write_text(json.dumps({"runs": [asdict(r) for r in runs], "fp32_top1": fp32_top1}, indent=2))


if __name__ == "__main__":
    main()
