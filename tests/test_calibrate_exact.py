"""Ranges and caches do not depend on how calibration spreads its work over threads: they equal the ones
computed from plain numpy histograms of every activation over all samples at once (np.histogram), the
statistics the streamed, pieced and parallel fold must reproduce bin for bin.

The histogram of |x| covers [0, R): R is the power of two just above max |x|, except for a tensor whose
statistics follow from other tensors' (Relu, Concat and moves, see ``collect.derivations``): it keeps
the widest R of its sources.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeq import model as model_module
from edgeq import recipe as recipe_module
from edgeq import targets
from edgeq.calibrate import calibrate, collect, stats, threads
from edgeq.calibrate.activations import activation_tensors, session, with_outputs
from edgeq.calibrate.cache import build_cache, constant_ranges
from edgeq.calibrate.policy import excluded_tensors
from edgeq.calibrate.prepare import prepare
from edgeq.calibrate.selection import base_ranges, protected_tensors
from edgeq.calibrate.stats import DEFAULT_BINS, TensorStats, range_above
from edgeq.calibrate.threads import ThreadPlan
from edgeq.data import Dataset
from tests.calibrate_nets import fire_net, images, residual_net, write_recipe

ORIN = "agx-orin-jp6.2"  # TensorRT 10.3.0: implicit INT8, so a calibration cache is written


def _all_at_once(fp32: onnx.ModelProto, tensors: list[str], x: np.ndarray) -> dict[str, TensorStats]:
    """Every tensor's statistics the plain way: all values at once, one np.histogram of |x| each."""
    everything = dict(zip(tensors, session(with_outputs(fp32, tensors), portable=True).run(tensors, {"data": x}), strict=True))
    ranges: dict[str, float] = {}
    derived = collect.derivations(fp32, tensors)
    for name in tensors:  # graph order: sources first
        absmax = float(np.abs(everything[name]).max())
        own = range_above(absmax) if absmax > 0 else 0.0
        ranges[name] = max(ranges[source] for source in derived[name][1]) if name in derived else own
    stats = {}
    for name, values in everything.items():
        flat = values.ravel().astype(np.float64)
        hist_range = ranges[name] or 1.0
        hist = np.histogram(np.abs(flat), bins=DEFAULT_BINS, range=(0.0, hist_range))[0]
        stats[name] = TensorStats(name, float(flat.min()), float(flat.max()), flat.size, hist, hist_range)
    return stats


def _reference(recipe_path: Path, method: str) -> tuple[dict, str]:
    """ranges.json's tensors and calibration.cache's text, from numpy histograms of all activations."""
    recipe = recipe_module.load(recipe_path)
    prepared = prepare(model_module.load(recipe.model_path))
    fp32 = prepared.model
    tensors = [t for t in activation_tensors(fp32) if t not in prepared.unquantizable]
    stats = _all_at_once(fp32, tensors, Dataset.from_spec(recipe, recipe.calibration, "calibration").load().x)
    ranges = base_ranges(stats, method, recipe.calibration.percentile, protected_tensors(fp32, tensors), f"method {method} (as asked)")
    excluded = {**prepared.unquantizable, **excluded_tensors(fp32, {n: r.amax for n, r in ranges.items()})}
    table = {n: {"amax": r.amax, "scale": r.scale, "min": r.min, "max": r.max, "method": r.method, "why": r.reason,
                 "excluded": excluded.get(n)} for n, r in ranges.items()}
    target = targets.resolve(ORIN)
    assert target.trt_version is not None
    amax = {**constant_ranges(fp32, target.trt_version), **{n: ranges[n].amax for n in tensors if n not in excluded}}
    cache = build_cache(amax, target.trt_version).to_text()
    return table, cache


@pytest.mark.parametrize("way", stats.COUNTINGS)  # either way this CPU can count, whichever it measured faster
@pytest.mark.parametrize("plan", [ThreadPlan(cores=1, ort=1), ThreadPlan(cores=8, ort=3)])
def test_pieced_parallel_fold_equals_numpy_histograms_of_all_activations(
    monkeypatch: pytest.MonkeyPatch, plan: ThreadPlan, way: str
) -> None:
    monkeypatch.setattr(stats, "counting", lambda: way)
    model = prepare(fire_net(seed=5)).model
    tensors = activation_tensors(model)
    batches = [images(np.random.default_rng(i), n, 32) * (1 + 3 * i) for i, n in enumerate([3, 7, 1, 5])]  # ranges widen
    monkeypatch.setattr(collect, "PIECE", 777)  # pieces that straddle rows, many per tensor
    streamed = collect.collect(model, tensors, batches, plan=plan)
    expected = _all_at_once(model, tensors, np.concatenate(batches))
    for name in tensors:
        got, want = streamed[name], expected[name]
        assert (got.min, got.max, got.count, got.hist_range) == (want.min, want.max, want.count, want.hist_range), name
        assert np.array_equal(got.hist, want.hist), name


@pytest.mark.slow
@pytest.mark.parametrize(("net", "method"), [(fire_net, "entropy"), (residual_net, "percentile"), (fire_net, "minmax")])
def test_ranges_and_cache_equal_numpy_histograms_of_all_activations_for_any_thread_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, net, method: str
) -> None:
    size = 32 if net is fire_net else 16
    path = write_recipe(tmp_path, net(seed=3), size=size, calibration__method=method)
    expected_table, expected_cache = _reference(path, method)
    monkeypatch.setattr(collect, "PIECE", 1000)  # many pieces per tensor, folded out of order on several threads
    monkeypatch.setattr(threads, "available_cores", lambda: 8)  # 4 fold workers, 2 decoders, even on a 2-core machine
    folders = []
    for count in (1, 3, None):
        out = tmp_path / f"threads-{count}"
        calibrate(recipe_module.load(path), targets.resolve(ORIN), out=out, threads=count, progress=False)
        assert json.loads((out / "ranges.json").read_text())["tensors"] == expected_table
        assert (out / "calibration.cache").read_text() == expected_cache
        folders.append(out)
    for name in ("ranges.json", "calibration.cache", "model.qdq.onnx", "validation.npz"):
        assert len({(folder / name).read_bytes() for folder in folders}) == 1, name
    # 1, 3 and 8 validation lanes: the same predicted accuracy, to the last digit
    accuracies = [json.loads((folder / "report.json").read_text())["accuracy"] for folder in folders]
    assert accuracies[0] == accuracies[1] == accuracies[2]
