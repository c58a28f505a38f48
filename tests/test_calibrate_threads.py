"""How calibrate spreads its work: thread counts for any machine, and validation lanes that keep the order."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.calibrate import predict, threads
from edgeq.calibrate.threads import ThreadPlan
from tests.calibrate_nets import fire_net, images


@pytest.mark.parametrize(
    ("cores", "ort", "collect", "workers", "decoders"),
    [
        (1, None, 1, 1, 1),  # one core: everything shares it
        (2, None, 1, 1, 1),
        (16, None, 8, 8, 2),  # ONNX Runtime leaves half the cores to the fold
        (16, 2, 2, 8, 2),  # two ONNX Runtime threads; the numpy work still uses the other cores
        (64, None, 32, 8, 2),
    ],
)
def test_thread_counts_follow_the_cores_and_the_ort_budget(cores: int, ort: int | None, collect: int, workers: int, decoders: int) -> None:
    plan = ThreadPlan.for_machine(ort, cores=cores)
    assert (plan.collect_threads, plan.workers, plan.decoders) == (collect, workers, decoders)


@pytest.mark.parametrize(
    ("cores", "ort", "run_mb", "lanes"),
    [
        (2, None, 7, 2),  # one lane per ONNX Runtime thread
        (16, None, 7, 9),  # the example on 16 cores: as many as 64 MB of activations hold
        (16, None, 0, 16),  # tiny runs: one lane per core, at most MAX_LANES
        (64, None, 0, threads.MAX_LANES),
        (16, 2, 7, 2),
        (16, None, 200, 1),  # a run larger than the budget still runs, alone
    ],
)
def test_validation_lanes_follow_the_threads_and_the_activations_they_hold(cores: int, ort: int | None, run_mb: int, lanes: int) -> None:
    plan = ThreadPlan.for_machine(ort, cores=cores)
    assert plan.lanes(run_mb * 2**20 - (run_mb > 0) * 2**18) == lanes  # a little under run_mb MB
    assert plan.lanes(run_mb * 2**20) * run_mb * 2**20 <= max(threads.LANE_BUDGET, run_mb * 2**20)
    assert lanes + plan.validation_threads(lanes) - 1 == plan.ort  # the lanes' threads and the pool's: ort in all


def test_the_machine_default_is_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    assert ThreadPlan.for_machine() == ThreadPlan(cores=3, ort=3)
    with pytest.raises(ValueError, match="at least 1"):
        ThreadPlan.for_machine(0)


def test_validation_lanes_return_every_batch_in_order_with_the_serial_outputs() -> None:
    model = fire_net(seed=4).SerializeToString()
    batches = [images(np.random.default_rng(i), n, 32) for i, n in enumerate([3, 1, 4, 2, 5, 3])]
    serial = predict.Runner([model, model])
    for x in batches:
        serial.feed(x)
    laned = predict.Runner([model, model], threads=1)
    passed = list(laned.feed_all(iter(batches), lanes=3))
    assert len(passed) == len(batches) and all(a is b for a, b in zip(passed, batches, strict=True))
    for one, other in zip(serial.results(), laned.results(), strict=True):
        for name in one:
            np.testing.assert_array_equal(one[name], other[name])
