"""The histogram fold on 1..N threads: how both ways of counting (sort, bincount) scale, on real activations.

The example's exposed activations over ``--samples`` calibration images are cut into the pieces
``edgeq.calibrate.collect`` folds (``PIECE`` values each) and folded by ``stats.piece_of`` on a pool of
k threads, once per way of counting (``stats.counting``: ``sort`` where numpy sorts int16 with SIMD,
``bincount`` elsewhere; the counts are the same, checked here). Prints wall and CPU nanoseconds per value,
best of ``--rounds``, and each against bincount on one thread measured in the same run: the fold keeps up
with ONNX Runtime only while the wall time per value keeps falling as threads are added.

    nice -n 5 python bench/fold_scaling.py [--samples 18] [--threads 1 2 4 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeq import model as model_module
from edgeq import recipe as recipes
from edgeq.calibrate import activations, collect, stats
from edgeq.calibrate.prepare import prepare
from edgeq.calibrate.threads import available_cores
from edgeq.data import Dataset

RECIPE = ROOT / "recipes" / "squeezenet-digits" / "recipe.yaml"


def pieces(samples: int) -> list[np.ndarray]:
    """The example's exposed activations over ``samples`` images, in fold-sized pieces."""
    recipe = recipes.load(RECIPE)
    fp32 = prepare(model_module.load(recipe.model_path, infer_shapes=False)).model
    direct = collect.exposed_tensors(fp32, activations.activation_tensors(fp32))
    session = activations.session(activations.with_outputs(fp32, direct), portable=True)
    data = Dataset.from_spec(recipe, recipe.calibration.model_copy(update={"samples": samples}), "calibration")
    out = []
    for batch in data.batches(9):
        for values in activations.run(session, batch.x, direct):
            flat = values.reshape(-1)
            out += [flat[start : start + collect.PIECE] for start in range(0, flat.size, collect.PIECE)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=18)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, 2, 4, 8, available_cores()}))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = pieces(args.samples)
    total = sum(p.size for p in work)
    print(f"{os.cpu_count()} cores ({available_cores()} usable), numpy {np.__version__}; this machine counts by "
          f"'{stats.counting()}'; {len(work)} pieces, {total / 1e6:.1f} M values")
    results: dict[tuple[str, int], tuple[float, float]] = {}
    folded = {}
    for way in stats.COUNTINGS:
        os.environ[stats.COUNT_ENV] = way  # each way in turn, as a user would force it
        stats.counting.cache_clear()
        folded[way] = [stats.piece_of("t", p).signed for p in work]
        for threads in args.threads:
            best_wall = best_cpu = math.inf
            with ThreadPoolExecutor(threads) as pool:
                for _ in range(args.rounds):
                    wall, cpu = time.perf_counter(), time.process_time()
                    list(pool.map(lambda p: stats.piece_of("t", p), work))
                    best_wall = min(best_wall, time.perf_counter() - wall)
                    best_cpu = min(best_cpu, time.process_time() - cpu)
            results[way, threads] = (best_wall / total * 1e9, best_cpu / total * 1e9)
    same = all(np.array_equal(a, b) for a, b in zip(folded["sort"], folded["bincount"], strict=True))
    base = results["bincount", args.threads[0]][0]
    for (way, threads), (wall, cpu) in results.items():
        print(f"{way:8s} {threads:3d} threads: {wall:6.2f} ns/value wall ({base / wall:5.2f}x bincount on "
              f"{args.threads[0]} thread), {cpu:6.2f} ns/value CPU")
    print(f"counts identical both ways: {same}")


if __name__ == "__main__":
    main()
