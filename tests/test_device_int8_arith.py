"""The INT8 arithmetic probe: its verdict against independent checks, the override, and a real AVX2 CPU (emulated)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeq.device.errors import AgentError
from edgeq.device.int8_arith import (
    ENV,
    cpu_flags,
    int8_arithmetic,
    measure,
    probe_activations,
    probe_model,
    probe_weight_sets,
    run_probe_model,
    saturated_products,
)

ROOT = Path(__file__).resolve().parents[1]


def test_saturation_model_adds_pairs_in_16_bits() -> None:
    a = np.array([[255, 255, 255, 255]], np.uint8)
    b = np.array([[127], [127], [-128], [-128]], np.int8)
    # (255*127 + 255*127) = 64770 -> 32767; (255*-128)*2 = -65280 -> -32768
    assert saturated_products(a, b).tolist() == [[32767 - 32768]]
    small = np.array([[64], [64], [-64], [-64]], np.int8)  # 7-bit weights: 2 x 255 x 64 = 32640 fits
    assert saturated_products(a, small).tolist() == [[0]]
    assert saturated_products(a, np.array([[64], [64], [64], [1]], np.int8)).tolist() == [[255 * 193]]


def test_probe_model_is_valid_onnx_with_inputs_that_overflow_16_bits() -> None:
    model, feeds = probe_model()
    onnx.checker.check_model(onnx.load_from_string(model), full_check=True)
    a, full = probe_activations(), probe_weight_sets()["full"]
    assert np.array_equal(feeds["a"], a) and feeds["x"].shape == (1, a.shape[1], 2, 2)
    pairs = a[:, 0::2, None].astype(np.int32) * full[None, 0::2] + a[:, 1::2, None].astype(np.int32) * full[None, 1::2]
    assert (np.abs(pairs) > 32767).any() and (np.abs(pairs) <= 32767).any()  # some pairs overflow, some do not


def test_verdict_matches_the_cpu_flags_and_the_raw_outputs() -> None:
    """Independent of the probe's own comparison: the CPU's VNNI flags, and the raw int32 outputs against numpy."""
    measured = measure()
    flags = set(cpu_flags())
    if platform.machine() in ("x86_64", "AMD64") and "avx2" in flags:
        vnni = bool(flags & {"avx512_vnni", "avx_vnni"})
        assert measured.verdict == ("exact" if vnni else "saturating"), (flags, measured)
    outputs = run_probe_model()
    a, full = probe_activations(), probe_weight_sets()["full"]
    exact = a.astype(np.int64) @ full.astype(np.int64)
    if measured.verdict == "exact":
        np.testing.assert_array_equal(outputs["full_matmul"], exact)
    else:
        assert not np.array_equal(outputs["full_matmul"], exact)
    seven = probe_weight_sets()["seven"]
    np.testing.assert_array_equal(outputs["seven_matmul"], a.astype(np.int64) @ seven.astype(np.int64))
    assert measured.reduced_range.exact
    assert measure() is measured  # measured once per process


def test_override_forces_each_verdict_and_keeps_the_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    measured = measure().verdict
    for forced in ("exact", "saturating"):
        monkeypatch.setenv(ENV, forced)
        arithmetic = int8_arithmetic()
        assert (arithmetic.verdict, arithmetic.forced, arithmetic.measured) == (forced, forced, measured)
    monkeypatch.setenv(ENV, "fast")
    with pytest.raises(AgentError, match="EDGEQ_INT8_ARITH: expected 'exact' or 'saturating', found 'fast'"):
        int8_arithmetic()
    monkeypatch.delenv(ENV)
    assert int8_arithmetic().forced is None


def test_cpu_flags_reads_x86_and_arm_names(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512bw avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n")
    assert cpu_flags(str(x86)) == ["avx2", "avx512bw", "avx512_vnni"]
    assert cpu_flags(str(arm)) == ["asimddp", "i8mm"]
    assert cpu_flags(str(tmp_path / "missing")) == []


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("qemu-x86_64") is None,
                    reason="needs qemu-x86_64 (Debian: qemu-user, installed by tests/devices/provision.sh) on x86_64")
def test_probe_finds_saturation_on_an_avx2_cpu_without_vnni() -> None:
    """ONNX Runtime under qemu's Haswell CPU model (AVX2, no VNNI): MLAS picks its AVX2 kernels there.

    /proc/cpuinfo still shows this machine's flags inside qemu-user: the verdict comes from the probe.
    """
    code = "import json; from edgeq.device.int8_arith import measure; print(json.dumps(measure().to_dict()))"
    done = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, "-c", code],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["verdict"] == "saturating"
    assert all(not c["exact"] and c["matches_saturation"] for c in found["checks"]), found["checks"]
    assert found["reduced_range"]["exact"]  # 7-bit weights cannot overflow: the formulation edgeq picks there


def test_targets_show_local_names_the_verdict_and_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.cli import run_edgeq

    measured = measure().verdict
    shown = run_edgeq("targets", "show", "local", "--json")
    assert shown.code == 0, shown.stderr
    found = json.loads(shown.stdout)["int8_arithmetic"]
    assert (found["verdict"], found["measured"], found["forced"]) == (measured, measured, None)
    assert [c["kernel"] for c in found["checks"]] == ["QLinearConv u8 x s8", "MatMulInteger u8 x s8"]
    monkeypatch.setenv(ENV, "saturating")  # the subprocess inherits it
    table = run_edgeq("targets", "show", "local")
    monkeypatch.setenv(ENV, "sometimes")
    bad = run_edgeq("targets", "show", "local")
    monkeypatch.delenv(ENV)
    assert "saturating: forced by EDGEQ_INT8_ARITH=saturating" in " ".join(table.stdout.split())
    assert bad.code == 2 and "EDGEQ_INT8_ARITH: expected 'exact' or 'saturating'" in bad.stderr
