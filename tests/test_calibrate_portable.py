"""The calibration's numbers do not depend on the x86 CPU: the same recipe gives the same statistics, ranges and
calibration cache, byte for byte, on an AVX-512 machine and under qemu's Haswell model (AVX2, no AVX-512), where
ONNX Runtime's MLAS and numpy take their AVX2 kernels (and the fold counts with ``bincount``, not the SIMD sort).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from tests.calibrate_nets import images, wide_state_net
from tests.cli import ENV, run_edgeq

ROOT = Path(__file__).resolve().parents[1]
TARGET = "orin-nano-jp6.2"


def _calibrate_avx2(recipe: Path, out: Path, method: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, "-m", "edgeq", "calibrate", str(recipe),
                           "--target", TARGET, "--method", method, "--out", str(out)],
                          cwd=ROOT, env={**os.environ, **ENV, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=900)


def _state_recipe(folder: Path, size: int = 32) -> Path:
    """:func:`wide_state_net` with sequences of 4 samples: its state input is calibrated on FP32's fed-back outputs."""
    folder.mkdir(parents=True)
    onnx.save(wide_state_net(size=size), folder / "model.onnx")
    rng = np.random.default_rng(0)
    np.savez(folder / "cal.npz", data=images(rng, 24, size))
    np.savez(folder / "val.npz", data=images(rng, 8, size), labels=rng.integers(0, 4, 8))
    state = ["N", 32, size // 2, size // 2]
    recipe = {
        "name": "wide-state",
        "model": "model.onnx",
        "inputs": [{"name": "data", "shape": ["N", 3, size, size]}, {"name": "h", "shape": state, "state": "h_out"}],
        "calibration": {"path": "cal.npz", "batch_size": 8, "sequence_length": 4},
        "validation": {"path": "val.npz", "sequence_length": 4},
        "budget": {"accuracy_drop": 100.0},
    }
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return folder / "recipe.yaml"


def _statistics(recipe: Path) -> bytes:
    """The calibration store's one statistics entry (histograms and extremes of every tensor)."""
    (entry,) = (recipe.parent / "edgeq-out").glob("*/.store/*/statistics.npz")
    return entry.read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("qemu-x86_64") is None,
                    reason="needs qemu-x86_64 (Debian: qemu-user, installed by tests/devices/provision.sh) on x86_64")
def test_statistics_ranges_and_cache_are_the_same_bytes_on_an_avx2_cpu(tmp_path: Path) -> None:
    here = _state_recipe(tmp_path / "here")
    there = tmp_path / "there"
    shutil.copytree(here.parent, there)  # a store of its own: the AVX2 run measures everything again
    for method in ("entropy", "mse"):  # the second run takes the statistics from the store: only the search runs
        native = run_edgeq("calibrate", here, "--target", TARGET, "--method", method, "--out", tmp_path / f"here-{method}")
        emulated = _calibrate_avx2(there / "recipe.yaml", tmp_path / f"there-{method}", method)
        assert native.code in (0, 1), native.stderr
        assert emulated.returncode in (0, 1), emulated.stderr[-3000:]
        for name in ("ranges.json", "calibration.cache", "model.qdq.onnx"):
            mine, theirs = (tmp_path / f"{side}-{method}" / name for side in ("here", "there"))
            assert mine.read_bytes() == theirs.read_bytes(), f"{method}: {name} differs on the AVX2 CPU"
    assert _statistics(here) == _statistics(there / "recipe.yaml")
