"""What exposing every activation costs ONNX Runtime: the example's statistics run against a plain FP32 run.

The example's prepared model (SqueezeNet 1.1 at 227x227), one batch of ``--batch`` random images, run on 1..N
intra-op threads as:

  plain ALL            the FP32 model at ONNX Runtime's default optimization level (the FP32 pass of the bench)
  plain EXTENDED       the same model at level EXTENDED (no NCHWc layout kernels)
  exposed EXTENDED     every activation edgeq folds exposed as an output, level EXTENDED (what keeps their bits)
  exposed recycled     the same, written into the arrays of the run before (``activations.RecycledRun``)
  exposed lanes        the same on as many lanes as threads: concurrent single-threaded runs of one sample each
                       through one session (ONNX Runtime scales better over runs than inside one; edgeq does not
                       run so: see bench/README.md, "exposed_run.py")
  exposed ALL          exposed at level ALL (other bits: shown for the cost only)

Prints wall and CPU milliseconds per sample, best of ``--rounds``, and each against plain ALL on the same number
of threads, measured in the same run.

    nice -n 5 python bench/exposed_run.py [--threads 1 2] [--batch 16] [--rounds 4]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnx
import onnxruntime as ort

from edgeq.calibrate import activations
from edgeq.calibrate.collect import exposed_tensors
from edgeq.calibrate.prepare import prepare

MODEL = ROOT / "recipes" / "squeezenet-digits" / "model.onnx"


def _session(model: onnx.ModelProto, level: ort.GraphOptimizationLevel, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = level
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _lanes(session: ort.InferenceSession, names: list[str], lanes: int):
    """A batch run as single samples on ``lanes`` threads, each through a RecycledRun of its own."""
    runs = [activations.RecycledRun(session, names) for _ in range(lanes)]
    pool = ThreadPoolExecutor(lanes)

    def lane(index: int, batch: np.ndarray) -> None:
        for start in range(index, len(batch), lanes):
            runs[index](batch[start : start + 1])

    return lambda batch: list(pool.map(lane, range(lanes), [batch] * lanes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    x = np.random.default_rng(0).standard_normal((args.batch, 3, 227, 227)).astype(np.float32)
    model = prepare(onnx.load(MODEL), source=str(MODEL), feeds=[{"data": x[:2]}]).model
    names = exposed_tensors(model, activations.activation_tensors(model))
    exposed = activations.with_outputs(model, names)
    level = ort.GraphOptimizationLevel
    print(f"{len(names)} activations exposed; batch {args.batch}; ONNX Runtime {ort.__version__}")
    for threads in args.threads:
        plain_all: float | None = None
        for label, graph, opt, recycled in (("plain ALL", model, level.ORT_ENABLE_ALL, False),
                                            ("plain EXTENDED", model, level.ORT_ENABLE_EXTENDED, False),
                                            ("exposed EXTENDED", exposed, level.ORT_ENABLE_EXTENDED, False),
                                            ("exposed recycled", exposed, level.ORT_ENABLE_EXTENDED, True),
                                            ("exposed lanes", exposed, level.ORT_ENABLE_EXTENDED, True),
                                            ("exposed ALL", exposed, level.ORT_ENABLE_ALL, False)):
            laned = label == "exposed lanes"
            session = _session(graph, opt, 1 if laned else threads)
            wanted = names if graph is exposed else None
            run = (_lanes(session, names, threads) if laned else activations.RecycledRun(session, names) if recycled
                   else (lambda batch, s=session, w=wanted: s.run(w, {"data": batch})))
            for _ in range(3):  # warm-up; a recycled run binds from its second call on
                run(x)
            wall = cpu = math.inf
            for _ in range(args.rounds):
                start, start_cpu = time.perf_counter(), time.process_time()
                run(x)
                wall = min(wall, time.perf_counter() - start)
                cpu = min(cpu, time.process_time() - start_cpu)
            per_sample = 1000 * wall / args.batch
            plain_all = plain_all or per_sample
            print(f"{threads:2d} threads  {label:17s} {per_sample:6.2f} ms/sample wall ({per_sample / plain_all:4.2f}x plain ALL),"
                  f" {1000 * cpu / args.batch:6.2f} ms CPU", flush=True)


if __name__ == "__main__":
    main()
