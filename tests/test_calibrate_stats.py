"""Streaming statistics: equal to a one-shot histogram of all the data, re-binning included."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.calibrate import stats, threads
from edgeq.calibrate.stats import StreamingHistogram, range_above
from edgeq.errors import InputError


def _one_shot(batches: list[np.ndarray], bins: int, hist_range: float) -> np.ndarray:
    everything = np.abs(np.concatenate([b.ravel() for b in batches]))
    return np.histogram(everything, bins=bins, range=(0.0, hist_range))[0]


def test_range_is_the_next_power_of_two_strictly_above() -> None:
    assert range_above(1.0) == 2.0
    assert range_above(0.75) == 1.0
    assert range_above(3.0) == 4.0
    assert range_above(1e-3) == 2.0**-9


def test_streamed_histogram_equals_one_shot_after_rebinning() -> None:
    rng = np.random.default_rng(1)
    # Growing spreads force several widenings, one of them by more than the bin count (factor >= 2048).
    batches = [
        rng.standard_normal((4, 3, 17)).astype(np.float32) * 1e-4,
        rng.laplace(size=(5, 200)).astype(np.float32),
        np.maximum(rng.standard_normal(70_000), 0).astype(np.float32) * 30,  # ReLU-like, crosses a chunk boundary
        rng.standard_normal(1000).astype(np.float32) * 5,
        np.array([-1234.5, 0.0, 7.0], np.float32),
    ]
    stream = StreamingHistogram("t")
    for batch in batches:
        stream.update(batch)
    stats = stream.result()
    assert stats.hist_range == 2048.0
    assert np.array_equal(stats.hist, _one_shot(batches, 2048, stats.hist_range))
    assert stats.count == sum(b.size for b in batches)
    everything = np.concatenate([b.ravel() for b in batches])
    assert (stats.min, stats.max) == (float(everything.min()), float(everything.max()))
    assert stats.absmax == 1234.5


@pytest.mark.parametrize("way", stats.COUNTINGS)
@pytest.mark.parametrize("bins", [2048, 1 << 15])  # sorted int16 levels, and int32 ones past 2**14 bins
def test_chunked_counts_equal_one_shot_either_way(monkeypatch: pytest.MonkeyPatch, bins: int, way: str) -> None:
    monkeypatch.setattr(stats, "counting", lambda: way)
    monkeypatch.setattr(stats, "_CHUNK", dict.fromkeys(stats.COUNTINGS, 1000))  # many chunks per batch, the last one short
    rng = np.random.default_rng(7)
    batches = [rng.standard_normal(12_345).astype(np.float32) * 3, np.maximum(rng.laplace(size=5_000), 0).astype(np.float32)]
    stream = StreamingHistogram("t", bins=bins)
    for batch in batches:
        stream.update(batch)
    result = stream.result()
    assert result.hist_range == range_above(float(np.abs(np.concatenate(batches)).max()))
    assert np.array_equal(result.hist, _one_shot(batches, bins, result.hist_range))
    levels = np.trunc(np.concatenate(batches).astype(np.float64) * (bins / result.hist_range)).astype(np.int64)
    assert np.array_equal(stream.signed, np.bincount(levels + bins - 1, minlength=2 * bins - 1))  # both signs, level by level


def test_counting_is_measured_once_or_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    stats.counting.cache_clear()
    monkeypatch.delenv(stats.COUNT_ENV, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)  # two fold workers
    assert stats.counting() in stats.COUNTINGS
    stats.counting.cache_clear()
    monkeypatch.setattr(threads, "available_cores", lambda: 3)  # one fold worker
    assert stats.counting() == "bincount"  # nothing gains from a sort that frees the GIL
    for way in stats.COUNTINGS:
        stats.counting.cache_clear()
        monkeypatch.setenv(stats.COUNT_ENV, way)
        assert stats.counting() == way
    stats.counting.cache_clear()
    monkeypatch.setenv(stats.COUNT_ENV, "radix")
    with pytest.raises(InputError, match="EDGEQ_HIST_COUNT: expected one of sort, bincount, found 'radix'"):
        stats.counting()
    stats.counting.cache_clear()


def test_zeros_before_the_first_non_zero_value_land_in_bin_zero() -> None:
    stream = StreamingHistogram("relu", bins=256)
    stream.update(np.zeros(100, np.float32))
    stream.update(np.array([0.3, 0.0, 0.9], np.float32))
    stats = stream.result()
    assert stats.hist[0] == 101 and stats.hist.sum() == 103
    assert np.array_equal(stats.hist, _one_shot([np.zeros(100), np.array([0.3, 0.0, 0.9])], 256, 1.0))


def test_memory_does_not_grow_with_samples() -> None:
    stream = StreamingHistogram("t")
    rng = np.random.default_rng(0)
    for _ in range(20):
        stream.update(rng.standard_normal(10_000).astype(np.float32))
    assert stream.hist.shape == (2048,)
    assert stream.result().count == 200_000


def test_nan_activations_are_an_input_error() -> None:
    stream = StreamingHistogram("conv1")
    with pytest.raises(InputError, match="conv1"):
        stream.update(np.array([1.0, np.nan], np.float32))


def test_relu_concat_and_reshape_statistics_derived_from_inputs_equal_their_own() -> None:
    from edgeq.calibrate.activations import activation_tensors, session, with_outputs
    from edgeq.calibrate.collect import collect, derivations
    from tests.calibrate_nets import fire_net, images

    model = fire_net(seed=2)
    tensors = activation_tensors(model)
    derived = derivations(model, tensors)
    assert {op for op, _ in derived.values()} == {"Relu", "Concat", "Flatten"}
    batches = [images(np.random.default_rng(i), 8, 32) for i in range(3)]
    stats = collect(model, tensors, batches)
    sess = session(with_outputs(model, tensors), portable=True)  # the same kernels as collect()
    outputs = [sess.run(tensors, {"data": x}) for x in batches]
    for position, name in enumerate(tensors):
        everything = np.concatenate([o[position].ravel() for o in outputs])
        s = stats[name]
        assert (s.min, s.max, s.count) == (float(everything.min()), float(everything.max()), everything.size), name
        assert np.array_equal(s.hist, _one_shot([everything], 2048, s.hist_range)), name
        if name not in derived:
            assert s.hist_range == range_above(float(np.abs(everything).max()))


def test_exposing_activations_never_lets_polygraphy_install_packages() -> None:
    import subprocess
    import sys

    code = (
        "from edgeq.calibrate.activations import with_outputs\n"
        "from tests.calibrate_nets import fire_net\n"
        "import polygraphy.config as c\n"
        "m = fire_net()\n"
        "out = with_outputs(m, [n.output[0] for n in m.graph.node])\n"
        "assert {o.name for o in out.graph.output} == {n.output[0] for n in m.graph.node}\n"
        "print(c.AUTOINSTALL_DEPS)\n"
    )
    env = {**__import__("os").environ, "POLYGRAPHY_AUTOINSTALL_DEPS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("bins", [1, 2, 8, 2048])
def test_rebinning_sends_each_level_to_its_sign_times_its_magnitude_shifted(bins: int) -> None:
    """Over a range 2**shift times wider, level v lands in sign(v) * (|v| >> shift), for every shift up to past the
    point where every level lands in 0."""
    counts = np.random.default_rng(bins).integers(0, 1000, 2 * bins - 1)
    levels = np.arange(-(bins - 1), bins)
    for shift in range(14):
        expected = np.zeros_like(counts)
        for level, count in zip(levels, counts, strict=True):
            expected[bins - 1 + int(np.sign(level)) * (abs(int(level)) >> shift)] += count
        assert np.array_equal(stats._rebinned(counts, 1.0, 2.0**shift), expected), shift


@pytest.mark.parametrize("way", stats.COUNTINGS)
def test_counting_steps_larger_than_a_thread_used_before_get_a_larger_buffer(monkeypatch: pytest.MonkeyPatch, way: str) -> None:
    """The index buffer is kept per thread: one made for short steps must not cut a later, longer step short."""
    monkeypatch.setattr(stats, "counting", lambda: way)
    values = np.random.default_rng(3).standard_normal(5_000).astype(np.float32)
    expected = _one_shot([values], 64, range_above(float(np.abs(values).max())))
    for step in (100, 4_000):
        monkeypatch.setattr(stats, "_CHUNK", dict.fromkeys(stats.COUNTINGS, step))
        stream = StreamingHistogram("t", bins=64)
        stream.update(values)
        assert np.array_equal(stream.result().hist, expected), step
