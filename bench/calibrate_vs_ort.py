"""Benchmark: `edgeq calibrate` against ONNX Runtime's and ModelOpt's INT8 post-training quantization.

For each model (the example SqueezeNet 1.1 at 227x227, and a heavier variant with Fire modules twice
as wide and random He-initialised weights) and each calibration sample count, every contender runs
in its own subprocess, one at a time:

  fp32          a plain FP32 ONNX Runtime pass over the same samples (the floor)
  fp32-portable the same pass on the kernels whose bits do not depend on the CPU, as edgeq's statistics run
                (``activations.session(portable=True)``: NCHWc off, Softmax written out): the floor of
                any calibration whose ranges are the same bytes on every x86 CPU
  reference     the two runs of the predicted accuracy over the example's validation set (539 images,
                whatever the sample count), batch by batch (16 a batch, one batch at a time): the FP32 model on the
                portable kernels (the prediction must not depend on the CPU either) and the INT8 model as the host runs
                it (ranges from an untimed min/max over 16 samples: its cost does not depend on them).
                fp32-portable + reference is the ONNX Runtime work any calibration with edgeq's guarantees
                (byte-identical ranges, the same prediction on every x86 CPU, validation included) must do,
                before any histogram, range search, exposure of activations or writing: the bench prints it
                against the FP32 pass as a floor, the CPU seconds of both spread over the cores the setting uses
  edgeq         edgeq.calibrate.pipeline.calibrate (prepare, statistics, ranges, policy, Q/DQ, the
                predicted accuracy on the validation set, writing; layer sensitivity only runs when the
                budget fails); "calib only" in the note column is the same run without the validation
                (and sensitivity) seconds: the anchors predict nothing, so that is the like-for-like time
  edgeq-warm    the same, the FP32 side of validation already in the store (an untimed run over other
                samples made it, as a user's earlier run with another sample count, method or target does);
                the statistics are measured, the INT8 model predicted
  ort-entropy   onnxruntime.quantization.quantize_static, Entropy calibrator  } QDQ, symmetric int8
  ort-minmax    onnxruntime.quantization.quantize_static, MinMax calibrator   } activations, per-channel
  modelopt-*    python -m modelopt.onnx.quantization (entropy / max) on CPU   } int8 weights

Thread settings (--threads, default "2 all"): with a number T, every ONNX Runtime session of every
contender gets T intra-op threads (the FP32 pass and edgeq set it themselves; the anchors' sessions
are made by their libraries, so the worker patches onnxruntime.InferenceSession to set it); edgeq's
own numpy and image-decoding threads are sized by the cores, as the FP32 pass's preprocessing runs
outside ONNX Runtime's threads too. "all" leaves every contender its defaults. --pin also restricts
each contender process to T cores (os.sched_setaffinity): a T-core machine.

Each worker resets its peak RSS after its imports (/proc/self/clear_refs) and reports the peak above
that post-import baseline, plus the peak RSS of any child process it waited for (RUSAGE_CHILDREN: a
contender that calibrates in a subprocess is counted in full, imports included). The parent kills a
worker whose process tree's RSS passes --mem-cap-gb (reported as "over cap"); --max-samples skips a
contender above a sample count (default: ORT entropy above 256, which keeps every activation of
every sample in memory: ~9 GB at 256). fp32, edgeq and ort-minmax run --repeat times (median wall,
largest peak). Every Q/DQ model is then scored on the example's validation set: top-1 accuracy (the
example model only; the heavy variant has random weights), agreement with FP32, output cosine.

Usage:
  python bench/calibrate_vs_ort.py --quick          # example model, 64 samples, no ModelOpt (~1 min)
  nice -n 10 python bench/calibrate_vs_ort.py       # both models, 64/256/1024 samples, all contenders
  --example-model PATH                              # another model in the example's place (same input and classes)
  --modelopt-python python3                         # ModelOpt importable from this interpreter (no venv)
ModelOpt runs from its own venv (it needs torch); create it once with
  python -m venv /tmp/modelopt-venv && /tmp/modelopt-venv/bin/pip install torch==2.13.0 nvidia-modelopt==0.47.0 \
      "onnx~=1.21.0" onnx-graphsurgeon "onnxconverter-common~=1.16.0" "onnxruntime~=1.24.2" onnxslim polygraphy \
      ml_dtypes lief cppimport onnxscript
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's edgeq, also for the workers' imports
RECIPE = HERE.parent / "recipes" / "squeezenet-digits" / "recipe.yaml"
TARGET = "orin-nano-jp6.2"  # TensorRT 10.3: explicit (Q/DQ) and implicit (cache) INT8
MODELOPT_PYTHON = Path("/tmp/modelopt-venv/bin/python")
BATCH = 16
ANCHORS = ("ort-entropy", "ort-minmax", "modelopt-entropy", "modelopt-max")
CONTENDERS = ("fp32", "fp32-portable", "reference", "edgeq", "edgeq-warm", "ort-minmax", "ort-entropy", "modelopt-entropy")  # the default matrix
REPEATED = ("fp32", "fp32-portable", "reference", "edgeq", "edgeq-warm", "ort-minmax")  # cheap enough to run --repeat times
WARMING_SAMPLES = 32  # the untimed run that leaves edgeq-warm's FP32 validation side in the store


# ---------------------------------------------------------------- worker side (one contender per process)


def _status(field_name: str) -> int:
    """A /proc/self/status memory field, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _children_peak() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB


def _reset_peak() -> int:
    """Reset the peak-RSS counter (Linux clear_refs 5) and return the post-import baseline RSS."""
    with contextlib.suppress(OSError):  # without a reset, the peak still includes the imports: reported as is
        Path("/proc/self/clear_refs").write_text("5")
    global _CHILDREN_AT_BASELINE
    _CHILDREN_AT_BASELINE = _children_peak()
    return _status("VmRSS")


_CHILDREN_AT_BASELINE = 0  # children waited for during the imports (ctypes' ldconfig, say) are not the contender's


def _pin_threads(threads: int | None, pin: bool, patch: bool) -> None:
    """``patch``: every ONNX Runtime session made in this process gets ``threads`` intra-op threads (None:
    the defaults); ``pin``: the process runs on ``threads`` cores."""
    if threads is None:
        return
    if pin:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    if not patch:
        return
    import onnxruntime as ort

    class Pinned(ort.InferenceSession):
        def __init__(self, path_or_bytes, sess_options=None, *args, **kwargs) -> None:
            options = sess_options if sess_options is not None else ort.SessionOptions()
            options.intra_op_num_threads = threads
            super().__init__(path_or_bytes, options, *args, **kwargs)

    ort.InferenceSession = Pinned


def _calibration_batches(recipe, samples: int):
    from edgeq.data import Dataset

    spec = recipe.calibration.model_copy(update={"samples": samples})
    dataset = Dataset.from_spec(recipe, spec, "calibration")
    return dataset, (batch.x for batch in dataset.batches(BATCH))


def _bench_recipe(model: Path, samples: int):
    from edgeq import recipe as recipe_module

    base = recipe_module.load(RECIPE)
    return base.model_copy(update={"model": model, "calibration": base.calibration.model_copy(update={"samples": samples})})


def work_fp32(model: Path, samples: int, out: Path, threads: int | None, portable: bool = False) -> dict:
    """One FP32 pass over the calibration samples; its wall and CPU seconds (every thread: ONNX Runtime's, decoding)."""
    import onnx
    import onnxruntime as ort

    from edgeq.calibrate import activations

    recipe = _bench_recipe(model, samples)
    baseline = _reset_peak()
    start, cpu = time.perf_counter(), time.process_time()
    # intra-op threads pinned by _pin_threads
    session = (activations.session(onnx.load(str(model)), portable=True) if portable
               else ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]))
    name = session.get_inputs()[0].name
    _, batches = _calibration_batches(recipe, samples)
    for x in batches:
        session.run(None, {name: x})
    return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu, "baseline": baseline}


def work_fp32_portable(model: Path, samples: int, out: Path, threads: int | None) -> dict:
    return work_fp32(model, samples, out, threads, portable=True)


def work_reference(model: Path, samples: int, out: Path, threads: int | None) -> dict:
    """The FP32 (portable) and INT8 (host) runs of the predicted accuracy over the validation set, one batch at a time."""
    import numpy as np

    from edgeq import model as model_module
    from edgeq import targets
    from edgeq.calibrate import activations
    from edgeq.calibrate.host import host_arithmetic, prediction_model
    from edgeq.calibrate.policy import excluded_tensors
    from edgeq.calibrate.prepare import prepare
    from edgeq.calibrate.qdq import build_qdq, plan_layers
    from edgeq.data import Dataset

    recipe = _bench_recipe(model, samples)
    fp32 = prepare(model_module.load(model, infer_shapes=False)).model
    tensors = activations.activation_tensors(fp32)
    exposed = activations.session(activations.with_outputs(fp32, tensors), portable=True)
    _, batches = _calibration_batches(recipe, 16)
    amax = {name: float(np.abs(values).max()) for name, values in zip(tensors, activations.run(exposed, next(batches), tensors), strict=True)}
    excluded = excluded_tensors(fp32, amax)
    int8 = prediction_model(build_qdq(fp32, plan_layers(fp32, tensors, excluded), amax), targets.resolve(TARGET).backend,
                            host_arithmetic().verdict)
    baseline = _reset_peak()
    start, cpu = time.perf_counter(), time.process_time()
    # intra-op threads pinned by _pin_threads
    sessions = [activations.session(fp32, portable=True), activations.session(int8.model, portable=int8.portable)]
    for batch in Dataset.from_spec(recipe, recipe.validation, "validation").batches(BATCH):
        for session in sessions:
            activations.run(session, batch.x)
    return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu, "baseline": baseline}


def work_edgeq(model: Path, samples: int, out: Path, threads: int | None, warm: bool = False) -> dict:
    from edgeq import targets
    from edgeq.calibrate.pipeline import calibrate, store_folder
    from edgeq.calibrate.store import VALIDATIONS

    recipe = _bench_recipe(model, samples)
    target = targets.resolve(TARGET)
    shutil.rmtree(store_folder(recipe), ignore_errors=True)  # cold: no statistics kept from an earlier round
    if warm:  # another sample count, in a process of its own, leaves the FP32 side of validation in the store
        code = ("import sys; sys.path.insert(0, sys.argv[1]); from calibrate_vs_ort import _bench_recipe, TARGET;"
                " from pathlib import Path; from edgeq import targets; from edgeq.calibrate.pipeline import calibrate;"
                " calibrate(_bench_recipe(Path(sys.argv[2]), int(sys.argv[3])), targets.resolve(TARGET), out=Path(sys.argv[4]),"
                " threads=None if sys.argv[5] == 'all' else int(sys.argv[5]), progress=False)")
        subprocess.run([sys.executable, "-c", code, str(HERE), str(model), str(WARMING_SAMPLES), str(out / "warming"),
                        "all" if threads is None else str(threads)], check=True)
        for entry in store_folder(recipe).iterdir():  # its statistics go: only the validation side is kept
            if entry.name != VALIDATIONS:
                shutil.rmtree(entry)
        shutil.rmtree(out / "warming")
    baseline = _reset_peak()
    start = time.perf_counter()
    result = calibrate(recipe, target, out=out / "edgeq", threads=threads, progress=False)
    wall = time.perf_counter() - start
    if warm and not result.report.validation_reused:
        raise RuntimeError("edgeq-warm: the FP32 side of validation was not taken from the store")
    for name in ("ranges.json", "calibration.cache"):  # kept for the comparison across thread settings
        shutil.copyfile(result.folder / name, out / name)
    os.replace(result.artifacts.qdq_model, out / "qdq.onnx")
    seconds = result.report.seconds
    extra = seconds.get("validation", 0.0) + seconds.get("sensitivity", 0.0)
    return {"wall": wall, "baseline": baseline, "wall_calibration_only": wall - extra, "seconds": seconds}


def work_edgeq_warm(model: Path, samples: int, out: Path, threads: int | None) -> dict:
    return work_edgeq(model, samples, out, threads, warm=True)


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


def work_ort_entropy(model: Path, samples: int, out: Path, threads: int | None) -> dict:
    return _work_ort(model, samples, out, "Entropy")


def work_ort_minmax(model: Path, samples: int, out: Path, threads: int | None) -> dict:
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


def work_modelopt_entropy(model: Path, samples: int, out: Path, threads: int | None) -> dict:
    return _work_modelopt(model, samples, out, "entropy")


def work_modelopt_max(model: Path, samples: int, out: Path, threads: int | None) -> dict:
    return _work_modelopt(model, samples, out, "max")


def worker_main(contender: str, model: Path, samples: int, out: Path, threads: int | None, pin: bool) -> None:
    _pin_threads(threads, pin, patch=not contender.startswith("edgeq"))  # edgeq sizes its sessions from ``threads`` itself
    result = globals()["work_" + contender.replace("-", "_")](model, samples, out, threads)
    children = _children_peak()
    children = children if children > _CHILDREN_AT_BASELINE else 0  # no larger child since the baseline
    result["children_peak"] = children
    result["peak_above_baseline"] = _status("VmHWM") - result.pop("baseline") + children
    (out / "result.json").write_text(json.dumps(result))


# ---------------------------------------------------------------- parent side


@dataclass
class Run:
    model: str
    samples: int
    contender: str
    threads: str = "all"
    wall: float | None = None
    peak_mb: float | None = None
    error: str = ""
    walls: list[float] = field(default_factory=list)
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


def run_worker(contender: str, model: Path, samples: int, work: Path, cap_bytes: int, python: str, threads: str, pin: bool) -> Run:
    """Run one contender in its own process; kill it if it passes the memory cap."""
    run = Run(model.stem, samples, contender, threads)
    command = [python, str(Path(__file__).resolve()), "--worker", contender, "--model", str(model), "--samples", str(samples),
               "--out", str(work), "--threads", threads, *(["--pin"] if pin else [])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p))
    with open(work / "log.txt", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        over_cap = False
        while process.poll() is None:
            if _rss(process.pid) > cap_bytes:
                process.kill()
                over_cap = True
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.2)
    if over_cap:
        run.error = f"over {cap_bytes / 2**30:.0f} GB cap"
    elif process.returncode != 0 or not (work / "result.json").exists():
        tail = (work / "log.txt").read_text().strip().splitlines()[-1:] or ["no output"]
        run.error = f"failed ({tail[0][:80]})"
    else:
        result = json.loads((work / "result.json").read_text())
        run.wall = result.pop("wall")
        run.walls = [run.wall]
        run.peak_mb = result.pop("peak_above_baseline") / 2**20
        run.extra = result
    return run


def repeated(runs: list[Run]) -> Run:
    """One run standing for repeats: the median wall, the largest peak, the first run's details."""
    ok = [r for r in runs if r.wall is not None]
    if not ok:
        return runs[0]
    first = ok[0]
    first.walls = [r.wall for r in ok]
    first.wall = statistics.median(first.walls)
    first.peak_mb = max(r.peak_mb for r in ok)
    first.extra["seconds_median"] = {
        key: statistics.median(r.extra["seconds"][key] for r in ok) for key in first.extra.get("seconds", {})
    }
    if "cpu" in first.extra:
        first.extra["cpu"] = statistics.median(r.extra["cpu"] for r in ok)
    return first


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


def machine() -> str:
    """The CPU, its core count and the ONNX Runtime version, in words."""
    import onnxruntime as ort

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), ONNX Runtime {ort.__version__}"


def render(runs: list[Run], fp32_top1: dict[str, float], cores: dict[str, int]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=180)
    console.print(f"Machine: {machine()}")
    table = Table(title="edgeq calibrate vs ONNX Runtime / ModelOpt (CPU)")
    for column in ("model", "threads", "samples", "contender", "wall s", "peak MB", "top-1 %", "agree %", "cosine", "note"):
        table.add_column(column, justify="left" if column in ("model", "contender", "note") else "right")
    for run in runs:
        notes = [f"calib only {run.extra['wall_calibration_only']:.2f}s"] if "wall_calibration_only" in run.extra else []
        if len(run.walls) > 1:
            notes.append("walls " + " ".join(f"{w:.2f}" for w in run.walls))
        if run.extra.get("seconds_median"):
            notes.append(" ".join(f"{k} {v:.2f}" for k, v in run.extra["seconds_median"].items() if k != "total"))
        if "cpu" in run.extra:
            notes.append(f"CPU {run.extra['cpu']:.2f}s")
        if run.extra.get("children_peak"):
            notes.append(f"incl. child {run.extra['children_peak'] / 2**20:.0f} MB")
        note = run.error or ", ".join(notes)
        table.add_row(run.model, run.threads, str(run.samples), run.contender, _fmt(run.wall, ".2f"), _fmt(run.peak_mb, ".0f"),
                      _fmt(run.top1, ".1f"), _fmt(run.agreement, ".1f"), _fmt(run.cosine, ".5f"), note)
    console.print(table)
    console.print(matrix(runs))
    for model, top1 in fp32_top1.items():
        console.print(f"FP32 top-1 of {model} on the validation set: {top1:.1f} %")
    console.print(ratios(runs))
    console.print(floor(runs, cores))


def matrix(runs: list[Run]) -> str:
    """The issue's layout: per model, one row per contender, 'wall s / peak MB' per thread setting and sample count."""
    lines = []
    for model in dict.fromkeys(r.model for r in runs):
        mine = [r for r in runs if r.model == model]
        columns = list(dict.fromkeys((r.threads, r.samples) for r in mine))
        lines.append(f"| {model}: median wall s / peak MB | " + " | ".join(f"{t} thr N={n}" for t, n in columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        keyed = {(r.contender, r.threads, r.samples): r for r in mine}
        for contender in dict.fromkeys(r.contender for r in mine):
            cells = []
            for threads, samples in columns:
                run = keyed.get((contender, threads, samples))
                if run is None:
                    cells.append("")
                elif run.wall is None:
                    cells.append(run.error)
                else:
                    cells.append(f"{run.wall:.2f} / {run.peak_mb:.0f}")
            lines.append(f"| {contender} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def floor(runs: list[Run], cores: dict[str, int]) -> str:
    """The least time the ONNX Runtime work of a calibration with edgeq's guarantees can take: the CPU seconds of the
    portable FP32 pass over the calibration samples and of the validation runs (the fewest over every thread setting
    measured: the work can run in any of them), spread over every core the setting may use (``cores``: thread setting
    -> cores), against the FP32 pass and the issue's target."""
    lines = []
    keyed = {(r.model, r.threads, r.samples, r.contender): r for r in runs}

    def cpu(model: str, threads: str, samples: int, contender: str) -> float | None:
        run = keyed.get((model, threads, samples, contender))
        return run.extra.get("cpu") if run and run.wall is not None else None

    for model, threads, samples in dict.fromkeys((r.model, r.threads, r.samples) for r in runs):
        fp32 = keyed.get((model, threads, samples, "fp32"))
        work = {t: (cpu(model, t, samples, "fp32-portable"), cpu(model, t, samples, "reference")) for t in cores}
        sums = {t: a + b for t, (a, b) in work.items() if a is not None and b is not None}
        if not (fp32 and fp32.wall and sums):
            continue
        fewest = min(sums, key=sums.__getitem__)
        least = sums[fewest] / cores[threads]
        target = 3.0 if samples <= 64 else 2.0
        verdict = "out of reach" if least / fp32.wall > target else "within reach"
        lines.append(f"{model} {threads} threads n={samples}: floor {least:.2f} s = {least / fp32.wall:.2f}x the FP32 pass "
                     f"(CPU of the portable pass + the validation runs, {work[fewest][0]:.2f} + {work[fewest][1]:.2f} s at "
                     f"{fewest} threads, over {cores[threads]} cores): the target of <= {target:.0f}x is {verdict}")
    return "\n".join(lines)


def ratios(runs: list[Run]) -> str:
    """edgeq against the FP32 floor and ORT MinMax, across thread settings and sample counts, with the targets."""
    lines = []
    keyed = {(r.model, r.threads, r.samples, r.contender): r for r in runs}

    def wall(model: str, threads: str, samples: int, contender: str) -> float | None:
        run = keyed.get((model, threads, samples, contender))
        return run.wall if run else None

    for model, threads, samples, name in dict.fromkeys(
        (r.model, r.threads, r.samples, r.contender) for r in runs if r.contender.startswith("edgeq")
    ):
        edgeq, fp32, portable, minmax = (wall(model, threads, samples, c) for c in (name, "fp32", "fp32-portable", "ort-minmax"))
        if edgeq is None:
            continue
        parts = [f"{model} {threads} threads n={samples}:"]
        if fp32:
            target = 3.0 if samples <= 64 else 2.0
            parts.append(f"{name} / FP32 pass {edgeq / fp32:.2f}x (target <= {target:.0f}x: {'met' if edgeq / fp32 <= target else 'MISSED'})")
        if portable:
            parts.append(f"{name} / portable FP32 pass {edgeq / portable:.2f}x")
        if minmax:
            verdict = "" if samples < 256 else f" (target <= 1x: {'met' if edgeq <= minmax else 'MISSED'})"
            parts.append(f"{name} / ORT MinMax {edgeq / minmax:.2f}x{verdict}")
        for anchor in ("ort-entropy", "modelopt-entropy", "modelopt-max"):
            other = keyed.get((model, threads, samples, anchor))
            if other and other.wall:
                parts.append(f"{name} / {anchor} {edgeq / other.wall:.2f}x")
        lines.append(" ".join(parts))
    settings = list(dict.fromkeys(r.threads for r in runs))
    for model, samples in dict.fromkeys((r.model, r.samples) for r in runs):
        walls = {t: wall(model, t, samples, "edgeq") for t in settings}
        if "all" in walls and walls["all"] and len([w for w in walls.values() if w]) > 1:
            for t, w in walls.items():
                if t != "all" and w:
                    verdict = "met" if walls["all"] <= w else "MISSED"
                    lines.append(f"{model} n={samples}: edgeq all cores / {t} threads {walls['all'] / w:.2f}x (target <= 1x: {verdict})")
    for model, threads in dict.fromkeys((r.model, r.threads) for r in runs):
        peaks = {r.samples: r.peak_mb for r in runs if (r.model, r.threads, r.contender) == (model, threads, "edgeq") and r.peak_mb}
        if len(peaks) > 1:
            low, high = min(peaks), max(peaks)
            flat = peaks[high] / peaks[low]
            verdict = "met" if flat <= 1.1 and max(peaks.values()) < 256 else "MISSED"
            lines.append(f"{model} {threads} threads: edgeq peak RSS n={high} / n={low} {flat:.2f}x, largest {max(peaks.values()):.0f} MB"
                         f" (target <= 1.1x and < 256 MB: {verdict})")
    return "\n".join(lines)


def identical_outputs(root: Path) -> str:
    """Whether edgeq's ranges.json and calibration.cache are byte-identical across thread settings and repeats."""
    lines = []
    groups: dict[tuple[str, str], list[Path]] = {}
    for folder in sorted(root.glob("*-edgeq-*")):
        model, samples = folder.name.split("-")[:2]
        groups.setdefault((model, samples), []).append(folder)
    for (model, samples), folders in groups.items():
        for name in ("ranges.json", "calibration.cache"):
            contents = {(f / name).read_bytes() for f in folders if (f / name).exists()}
            lines.append(f"{model} n={samples} {name}: {'identical' if len(contents) == 1 else f'{len(contents)} different'} over {len(folders)} runs")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="example model, 64 samples, no ModelOpt, all cores")
    parser.add_argument("--samples", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--models", nargs="+", default=["example", "heavy"], choices=["example", "heavy"])
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=["fp32", "fp32-portable", "reference", "edgeq", "edgeq-warm", *ANCHORS])
    parser.add_argument("--threads", nargs="+", default=["2", "all"], help="ONNX Runtime intra-op threads per setting: a number or 'all'")
    parser.add_argument("--pin", action="store_true", help="also restrict each contender to as many cores as threads")
    parser.add_argument("--repeat", type=int, default=3, help=f"runs of {', '.join(REPEATED)} per cell (median wall)")
    parser.add_argument("--max-samples", nargs="*", default=["ort-entropy=256"], metavar="CONTENDER=N",
                        help="skip a contender above N samples (default: ort-entropy=256)")
    parser.add_argument("--example-model", type=Path, help="the example's model (default: the recipe's trained model.onnx)")
    parser.add_argument("--mem-cap-gb", type=float, default=16.0, help="kill a contender whose RSS passes this")
    parser.add_argument("--modelopt-python", default=str(MODELOPT_PYTHON))
    parser.add_argument("--json", type=Path, help="also write every run as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        threads = None if args.threads[0] == "all" else int(args.threads[0])
        worker_main(args.worker, args.model, args.samples[0], args.out, threads, args.pin)
        return
    if args.quick:
        args.samples, args.models, args.threads, args.repeat = [64], ["example"], ["all"], 1
        args.contenders = [c for c in args.contenders if not c.startswith("modelopt")]
    modelopt_python = shutil.which(args.modelopt_python)
    if modelopt_python is None:
        skipped = [c for c in args.contenders if c.startswith("modelopt")]
        if skipped:
            print(f"ModelOpt's Python not found at {args.modelopt_python}: skipping {', '.join(skipped)} (see the module docstring)")
        args.contenders = [c for c in args.contenders if not c.startswith("modelopt")]
    limits = {name: int(n) for name, n in (item.split("=") for item in args.max_samples)}

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
    print(f"Machine: {machine()}", flush=True)
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
            for threads in args.threads:
                for samples in args.samples:
                    npy = None
                    for contender in args.contenders:
                        if samples > limits.get(contender, samples):
                            runs.append(Run(key, samples, contender, threads, error=f"skipped above {limits[contender]} samples"))
                            continue
                        python = modelopt_python if contender.startswith("modelopt") else sys.executable
                        attempts = []
                        for attempt in range(args.repeat if contender in REPEATED else 1):
                            work = root / f"{key}-{samples}-{contender}-{threads}-{attempt}"
                            work.mkdir()
                            if contender.startswith("modelopt"):
                                if npy is None:
                                    npy = root / f"{key}-{samples}.npy"
                                    _calibration_npy(model, samples, npy)
                                os.link(npy, work / "calibration.npy")
                            print(f"{key} {threads} threads n={samples} {contender} ...", flush=True)
                            attempts.append(run_worker(contender, model, samples, work, int(args.mem_cap_gb * 2**30), python, threads, args.pin))
                            print(f"  {_fmt(attempts[-1].wall, '.2f')} s, peak {_fmt(attempts[-1].peak_mb, '.0f')} MB {attempts[-1].error}", flush=True)
                        run = repeated(attempts)
                        run.model = key
                        if run.error == "" and (work / "qdq.onnx").exists():
                            score(run, work / "qdq.onnx", validation.x, validation.labels, reference, key == "example")
                        runs.append(run)
                    if npy is not None:
                        npy.unlink()
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "runs": [asdict(r) for r in runs], "fp32_top1": fp32_top1}, indent=2))
        usable = len(os.sched_getaffinity(0))
        cores = {t: usable if t == "all" or not args.pin else min(int(t), usable) for t in args.threads}
        render(runs, fp32_top1, cores)
        print(identical_outputs(root))


if __name__ == "__main__":
    main()
