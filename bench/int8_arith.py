"""INT8 on either CPU arithmetic: what the exact and the saturating-safe formulations cost against FP32.

Both paths run on this machine (EDGEQ_INT8_ARITH forces them; the saturating-safe formulations are
correct on every CPU), each against the FP32 pass measured in the same run:

1. the INT8 prediction for a TensorRT target (jetson-orin): the example's validation set through
   ``host_model(qdq, "exact")`` (fused u8 x s8 kernels) and ``host_model(qdq, "saturating")`` (fused u8 x u8
   kernels), on the portable sessions the prediction runs, over the FP32 pass (ONNX Runtime's defaults) on the
   same batches; the FP32 side of the prediction (portable) too, and whether the two INT8 paths give the same bytes;
2. the `local` engine the onnxruntime backend builds: 8-bit weights (exact CPUs) and 7-bit weights
   (saturating CPUs), batch-1 median latency over FP32's, and top-1 on the validation set.

Times are thread CPU seconds with one ONNX Runtime thread (``--threads 1``, the default): steady on a
shared machine. With more threads, wall-clock seconds. Interleaved rounds, best round per contender.

    nice -n 5 python bench/int8_arith.py [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeq import recipe as recipes
from edgeq import targets
from edgeq.calibrate import calibrate, predict
from edgeq.calibrate.host import HostModel, host_model
from edgeq.device.compare import cosine, top1_agreement
from edgeq.device.int8_arith import ENV, describe, measure
from edgeq.device.ort_backend import OnnxRuntimeBackend
from edgeq.device.report import BuildOptions

EXAMPLE = ROOT / "recipes" / "squeezenet-digits" / "recipe.yaml"
BATCH = 32


def session(model: bytes | str, threads: int) -> ort.InferenceSession:
    """ONNX Runtime's defaults: the FP32 pass (the baseline) and the local engines."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def best(contenders: dict[str, Callable[[], object]], rounds: int, threads: int) -> dict[str, float]:
    """Seconds of each contender's best round; rounds interleave the contenders."""
    clock = time.thread_time if threads == 1 else time.perf_counter
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, work in contenders.items():
            start = clock()
            work()
            seconds[name].append(clock() - start)
    return {name: min(values) for name, values in seconds.items()}


def run_all(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: b})[0] for b in predict.slices(x, BATCH)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=EXAMPLE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-runs", type=int, default=100, help="batch-1 runs per round for the local engine")
    args = parser.parse_args()
    recipe = recipes.load(args.recipe)
    print(f"this CPU: {describe(measure())}; cpu flags {', '.join(measure().cpu_flags) or '-'}")
    with tempfile.TemporaryDirectory(prefix="edgeq-bench-int8-") as scratch:
        out = Path(scratch)
        orin = calibrate(recipe, targets.resolve("jetson-orin"), out=out / "orin", progress=False)
        local = calibrate(recipe, targets.resolve("local"), out=out / "local", progress=False)
        data = np.load(orin.artifacts.validation)
        x, labels = data[recipe.inputs[0].name], data["labels"]
        fp32_bytes = orin.artifacts.fp32_model.read_bytes()
        qdq = onnx.load(orin.artifacts.qdq_model)

        # 1. the prediction for a TensorRT target
        plain = ort.SessionOptions()
        plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        reference = run_all(ort.InferenceSession(qdq.SerializeToString(), plain, providers=["CPUExecutionProvider"]), x)
        made: dict[str, HostModel] = {path: host_model(qdq, path) for path in ("exact", "saturating")}
        sessions = {"fp32": session(fp32_bytes, args.threads), "fp32 portable": predict.session(fp32_bytes, args.threads)}
        sessions.update({path: predict.session(m, args.threads) for path, m in made.items()})
        outputs = {name: run_all(sess, x) for name, sess in sessions.items()}
        took = best({name: (lambda s=sess: run_all(s, x)) for name, sess in sessions.items()}, args.rounds, args.threads)
        print(f"\n1. INT8 prediction for jetson-orin: {len(x)} validation images, batches of {BATCH}, {args.threads} thread(s)")
        print(f"{'':14}{'seconds':>9}{'x FP32':>8}{'top-1':>8}{'cos vs reference':>18}{'same top-1':>12}  kernels")
        for name in sessions:
            y = outputs[name]
            kernels = made[name].kernels if name in made else "FP32"
            print(f"{name:14}{took[name]:>9.3f}{took[name] / took['fp32']:>8.2f}{100 * np.mean(y.argmax(1) == labels):>8.2f}"
                  f"{cosine(reference, y):>18.6f}{100 * top1_agreement(reference, y):>11.2f}%  {kernels[:60]}")
        print(f"{'reference':14}{'':>9}{'':>8}{100 * np.mean(reference.argmax(1) == labels):>8.2f}"
              "  (the Q/DQ model, every graph optimization off)")
        same = outputs["exact"].tobytes() == outputs["saturating"].tobytes()
        print(f"the exact and saturating paths' outputs are {'the same bytes' if same else 'different'}")

        # 2. the local engine
        engines: dict[str, ort.InferenceSession] = {}
        kernels: dict[str, str] = {}
        backend = OnnxRuntimeBackend(threads=args.threads)
        for path in ("exact", "saturating"):
            os.environ[ENV] = path
            folder = out / f"engine-{path}"
            folder.mkdir()
            built = backend.build(BuildOptions(model=str(local.artifacts.fp32_model), qdq=str(local.artifacts.qdq_model),
                                               quantization="explicit", precision="int8"), str(folder), str(folder))
            engines[path] = session(str(folder / built.engine.artifact.path), args.threads)
            kernels[path] = built.engine.int8_kernels or ""
            engines.setdefault("fp32", session(str(folder / built.reference.artifact.path), args.threads))
        del os.environ[ENV]
        one = x[:1]

        def median_latency(sess: ort.InferenceSession) -> Callable[[], float]:
            name = sess.get_inputs()[0].name
            clock = time.thread_time if args.threads == 1 else time.perf_counter

            def runs() -> float:
                samples = []
                for _ in range(args.latency_runs):
                    start = clock()
                    sess.run(None, {name: one})
                    samples.append(clock() - start)
                return float(np.median(samples))
            return runs

        for sess in engines.values():  # warm up
            median_latency(sess)()
        medians: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(args.rounds):
            for name, sess in engines.items():
                medians[name].append(median_latency(sess)())
        fp32_ms = 1e3 * min(medians["fp32"])
        fp32_top1 = 100 * np.mean(run_all(engines["fp32"], x).argmax(1) == labels)
        print(f"\n2. local engine (onnxruntime backend): batch-1 median latency, best of {args.rounds} rounds"
              f" x {args.latency_runs} runs, {args.threads} thread(s)")
        print(f"{'':12}{'ms':>8}{'x FP32':>8}{'top-1':>8}{'drop':>7}  kernels")
        for name, sess in engines.items():
            ms = 1e3 * min(medians[name])
            top1 = 100 * np.mean(run_all(sess, x).argmax(1) == labels)
            print(f"{name:12}{ms:>8.3f}{ms / fp32_ms:>8.2f}{top1:>8.2f}{fp32_top1 - top1:>7.2f}  {kernels.get(name, 'FP32')[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
