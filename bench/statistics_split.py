"""How the statistics stage splits the cores: ONNX Runtime's threads against the fold's workers.

``edgeq.calibrate.collect.collect`` runs the exposed model on ``ThreadPlan.collect_threads`` intra-op threads while
``ThreadPlan.workers`` threads fold the batch before into the histograms. This runs the example's statistics over
``--samples`` calibration images (decoded once, before the clock) with the split this machine's ``ThreadPlan``
picks, the baseline, and with each ``--splits ORT:WORKERS``, interleaved, best of ``--rounds``; prints the wall
seconds and each against the baseline measured in the same run, and checks that every split gives the same
statistics.

    nice -n 5 python bench/statistics_split.py [--samples 1024] [--splits 1:1 2:1 1:2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeq import model as model_module
from edgeq import recipe as recipes
from edgeq.calibrate import activations
from edgeq.calibrate import collect as collect_module
from edgeq.calibrate.collect import collect
from edgeq.calibrate.exposure import plan, tensor_bytes
from edgeq.calibrate.prepare import prepare
from edgeq.calibrate.stats import counting
from edgeq.calibrate.threads import ThreadPlan
from edgeq.data import Dataset

RECIPE = ROOT / "recipes" / "squeezenet-digits" / "recipe.yaml"


@dataclass(frozen=True)
class Split(ThreadPlan):
    """A ThreadPlan whose statistics split is given instead of derived from the cores."""

    ort_threads: int = 1
    fold_workers: int = 1

    @property
    def collect_threads(self) -> int:
        return self.ort_threads

    @property
    def workers(self) -> int:
        return self.fold_workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--splits", nargs="+", default=["1:1", "2:1", "1:2", "2:2"], help="ORT threads:fold workers")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    recipe = recipes.load(RECIPE)
    spec = recipe.calibration.model_copy(update={"samples": args.samples})
    x = Dataset.from_spec(recipe, spec, "calibration").load().x
    model = prepare(model_module.load(recipe.model_path, infer_shapes=False)).model
    tensors = activations.activation_tensors(model)
    sizes = tensor_bytes(model, collect_module.exposed_tensors(model, tensors), {recipe.inputs[0].name: x.shape})
    rows = plan(sizes).rows[0]  # edgeq's exposure plan: the example's activations are one pass
    machine = ThreadPlan.for_machine()
    plans = {f"{machine.collect_threads}:{machine.workers} (this machine's plan)": machine}
    for text in args.splits:
        ort_threads, workers = (int(part) for part in text.split(":"))
        if (ort_threads, workers) != (machine.collect_threads, machine.workers):
            plans.setdefault(text, Split(cores=machine.cores, ort=machine.ort, ort_threads=ort_threads, fold_workers=workers))
    print(f"{len(x)} samples, {rows} a run, {machine.cores} cores, counting by {counting()}")
    best = dict.fromkeys(plans, math.inf)
    reference = None
    for _ in range(args.rounds):
        for name, split in plans.items():
            start = time.perf_counter()
            stats = collect(model, tensors, (x[i : i + rows] for i in range(0, len(x), rows)), plan=split)
            best[name] = min(best[name], time.perf_counter() - start)
            hists = {n: (s.hist.tobytes(), s.hist_range, s.min, s.max) for n, s in stats.items()}
            if reference is None:
                reference = hists
            assert hists == reference, f"split {name} gave other statistics"
    baseline = best[next(iter(plans))]
    for name, seconds in best.items():
        print(f"ORT threads:fold workers {name:28s} {seconds:6.2f} s  {seconds / baseline:5.2f}x the machine's plan", flush=True)
    print("statistics identical over every split and round")


if __name__ == "__main__":
    main()
