"""Peak memory of `calibrate` on a large-resolution detector: statistics within the byte budget (several passes)
against exposing every activation at once (one pass, as before), in the same run.

The model is PP-OCRv4 det from rapidocr-onnxruntime (the `test` extra) at 736 x 736 on synthetic text-like
images. Each contender runs `calibrate` for `local` in its own process; its peak RSS is what the report
records (getrusage of that process). The baseline exposes everything at once, so its memory grows with the
samples per run: it runs on fewer samples (`--baseline-samples`) under an address-space cap (`--cap-gb`); a
contender that fails (the cap reached, say) is reported with its last error line.

    nice -n 10 python bench/calibrate_memory.py                 # 32 samples budgeted, 4 for the baseline
    nice -n 10 python bench/calibrate_memory.py --samples 64 --baseline-samples 8 --cap-gb 12
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RUN = """
import json, sys
import edgeq.calibrate.pipeline as pipeline
from edgeq import recipe, targets
if sys.argv[2] != "default":
    pipeline.ACTIVATION_BUDGET = int(sys.argv[2])
result = pipeline.calibrate(recipe.load(sys.argv[1]), targets.resolve("local"), progress=False)
print(json.dumps({"memory": result.report.memory, "seconds": result.report.seconds}))
"""


def _recipe(folder: Path, samples: int) -> Path:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs rapidocr-onnxruntime: pip install -e '.[test]'")
    shutil.copyfile(Path(spec.submodule_search_locations[0]) / "models" / "ch_PP-OCRv4_det_infer.onnx", folder / "det.onnx")
    rng = np.random.default_rng(0)
    for name, count in (("cal", samples), ("val", 4)):
        (folder / name).mkdir()
        for index in range(count):
            pixels = np.full((736, 736, 3), 230, np.uint8)
            for _ in range(10):
                y, x = rng.integers(0, 700), rng.integers(0, 500)
                pixels[y : y + 12, x : x + int(rng.integers(60, 230))] = rng.integers(0, 60)
            Image.fromarray(pixels).save(folder / name / f"{index:03d}.png")
    data = {"name": "ppocr-det", "model": "det.onnx", "inputs": [{"name": "x", "shape": ["N", 3, 736, 736]}],
            "preprocess": {"resize": [736, 736], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "calibration": {"path": "cal", "samples": samples}, "validation": {"path": "val", "metric": "fidelity"},
            "budget": {"accuracy_drop": 100}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(data))
    return folder / "recipe.yaml"


def _run(recipe: Path, budget: str, cap_gb: float | None) -> dict | None:
    def limit() -> None:
        if cap_gb is not None:
            resource.setrlimit(resource.RLIMIT_AS, (int(cap_gb * 2**30), int(cap_gb * 2**30)))

    done = subprocess.run([sys.executable, "-c", RUN, str(recipe), budget], cwd=REPO, capture_output=True, text=True,
                          preexec_fn=limit)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"budget {budget}: exit {done.returncode}: {last[:300]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--baseline-samples", type=int, default=4)
    parser.add_argument("--cap-gb", type=float, default=8.0, help="address-space cap of the baseline's process")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, samples, budget, cap in (("budgeted", args.samples, "default", None),
                                            ("expose all at once", args.baseline_samples, str(1 << 50), args.cap_gb)):
            folder = Path(scratch) / label.replace(" ", "-")
            folder.mkdir()
            found = _run(_recipe(folder, samples), budget, cap)
            rows.append((label, samples, found))
    print(f"{'contender':<20} {'samples':>7} {'passes':>6} {'peak RSS MB':>11} {'statistics s':>12} {'total s':>8}")
    for label, samples, found in rows:
        if found is None:
            print(f"{label:<20} {samples:>7} {'-':>6} {'failed':>11}")
            continue
        memory, seconds = found["memory"], found["seconds"]
        print(f"{label:<20} {samples:>7} {memory['statistics_passes']:>6} {memory['peak_rss_mb']:>11.0f}"
              f" {seconds['statistics']:>12.1f} {seconds['total']:>8.1f}")
    (_, _, budgeted), (_, _, baseline) = rows
    if budgeted and baseline:
        ratio = budgeted["memory"]["peak_rss_mb"] / baseline["memory"]["peak_rss_mb"]
        print(f"peak RSS, budgeted at {args.samples} samples / all at once at {args.baseline_samples}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
