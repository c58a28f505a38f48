"""`edgeq deploy --target local` and `edgeq smoke`: the real agent in a subprocess on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeq import recipe as recipes
from edgeq.deploy.session import DeviceSession
from tests.calibrate_nets import fire_net, write_recipe
from tests.cli import run_edgeq


def _deploy(recipe: Path, workdir: Path, *extra: str):
    return run_edgeq("deploy", recipe, "--target", "local", "--workdir", workdir, "--json", *extra)


def _current(workdir: Path) -> str | None:
    with DeviceSession.local(str(workdir)) as session:
        return session.status().current


@pytest.mark.slow
def test_deploy_local_builds_measures_gates_and_activates(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r", fire_net())
    result = _deploy(recipe, tmp_path / "device")
    assert result.code == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert report["host"] == "local" and report["activated"] and report["passed"]
    assert report["build"]["backend"] == "onnxruntime"
    assert report["quantization"] == "explicit"
    # labels are the FP32 model's own top-1, so the device's FP32 run must score 100
    assert report["evaluation"]["fp32"] == 100.0
    assert report["evaluation"]["samples"] == 48
    assert abs(report["evaluation"]["drop"]) <= 5.0
    assert report["bench"]["int8"]["iterations"] == 200 and len(report["bench"]["int8"]["samples_ms"]) == 200
    assert report["bench"]["int8"]["p99_ms"] >= report["bench"]["int8"]["median_ms"]
    assert {g["name"] for g in report["gates"]} == {"accuracy drop", "smoke"}  # no latency budget in this recipe
    assert _current(tmp_path / "device") == report["engine_id"]
    folder = Path(report["files"]["folder"])
    assert json.loads((folder / "report.json").read_text())["engine_id"] == report["engine_id"]
    assert "data:image/png;base64," in (folder / "report.html").read_text()
    with np.load(folder / "outputs.int8.npz") as outputs:
        assert [outputs[name].shape for name in outputs.files] == [(48, 4)]


@pytest.mark.slow
def test_redeploy_sends_nothing_and_reuses_the_engine(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r", fire_net())
    first = json.loads(_deploy(recipe, tmp_path / "device").stdout)[0]
    assert first["transfer"]["files_sent"] == 5  # 4 artifacts and the agent and not first["build_reused"]
    second_run = _deploy(recipe, tmp_path / "device")
    assert second_run.code == 0, second_run.stderr
    second = json.loads(second_run.stdout)[0]
    assert second["transfer"]["files_sent"] == 0 and second["transfer"]["files_skipped"] == 5
    assert second["build_reused"] and second["engine_id"] == first["engine_id"]


@pytest.mark.slow
def test_failed_gate_exits_1_and_keeps_the_previous_engine(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r", fire_net())
    good = json.loads(_deploy(recipe, tmp_path / "device").stdout)[0]
    data = yaml.safe_load(recipe.read_text())
    data["budget"]["latency_p99_ms"] = 1e-6  # no engine is that fast
    recipe.write_text(yaml.safe_dump(data))
    result = _deploy(recipe, tmp_path / "device")
    assert result.code == 1
    (report,) = json.loads(result.stdout)
    assert not report["passed"] and not report["activated"]
    assert report["engine_id"] != good["engine_id"]
    assert "p99 latency" in result.stderr
    assert _current(tmp_path / "device") == good["engine_id"]


@pytest.mark.slow
def test_smoke_against_the_installed_engine(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r", fire_net())
    assert _deploy(recipe, tmp_path / "device").code == 0
    result = run_edgeq("smoke", recipe, "--target", "local", "--workdir", tmp_path / "device", "--json")
    assert result.code == 0, result.stderr
    (smoke,) = json.loads(result.stdout)
    assert smoke["passed"] and smoke["samples"] == 8
    assert smoke["comparison"]["cosine"] > 0.99


@pytest.mark.slow
def test_smoke_fails_when_the_installed_engine_is_another_models(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r", fire_net(seed=0))
    other = write_recipe(tmp_path / "other", fire_net(seed=7))
    assert _deploy(other, tmp_path / "device").code == 0
    result = run_edgeq("smoke", recipe, "--target", "local", "--workdir", tmp_path / "device", "--json")
    assert result.code == 1
    assert json.loads(result.stdout)[0]["passed"] is False


def test_bad_recipe_touches_no_device(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r", fire_net())
    (tmp_path / "r" / "model.onnx").write_bytes(b"not an onnx model")
    result = _deploy(recipe, tmp_path / "device")
    assert result.code == 2
    assert "model.onnx" in result.stderr
    assert not (tmp_path / "device").exists()
    assert recipes.load(recipe).name == "tiny"


def test_a_batch_1_model_deploys_and_smokes_locally(tmp_path: Path) -> None:
    from tests.calibrate_nets import with_batch

    recipe = write_recipe(tmp_path / "r", with_batch(fire_net(), 1), inputs=[{"name": "data", "shape": [1, 3, 32, 32]}])
    result = _deploy(recipe, tmp_path / "device")
    assert result.code == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert report["passed"] and report["evaluation"]["samples"] == 48 and report["evaluation"]["fp32"] == 100.0
    folder = Path(report["files"]["folder"])
    with np.load(folder / "outputs.int8.npz") as outputs:
        assert [a.shape for a in outputs.values()] == [(48, 4)]  # 48 runs of one sample each
    smoke = run_edgeq("smoke", recipe, "--target", "local", "--workdir", tmp_path / "device", "--json")
    assert smoke.code == 0, smoke.stderr
    assert json.loads(smoke.stdout)[0]["passed"]


@pytest.mark.slow
def test_a_crash_right_after_the_switch_is_reported_with_the_engine_the_device_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeq.device.workdir import CRASH_ENV

    recipe = write_recipe(tmp_path / "r", fire_net())
    device = tmp_path / "device"
    first = _deploy(recipe, device)
    assert first.code == 0, first.stderr
    old = json.loads(first.stdout)[0]["engine_id"]
    data = yaml.safe_load(recipe.read_text())
    data["build"] = {"workspace_mb": 1001}  # another engine id
    second = recipe.with_name("recipe-v2.yaml")
    second.write_text(yaml.safe_dump(data))
    monkeypatch.setenv(CRASH_ENV, "switched")  # the agent dies right after each switch (activate, then rollback)
    result = _deploy(second, device)
    monkeypatch.delenv(CRASH_ENV)
    assert result.code == 3, result.stderr
    (report,) = json.loads(result.stdout)
    assert not report["activated"] and report["engine_id"] != old
    assert report["engine_now"] == _current(device) == old  # the rollback's switch happened before its crash
    assert f"(the device runs engine {old})" in result.stderr


def _misses_the_budget_with_minmax(folder: Path, **fields: object) -> Path:
    """A recipe whose plain min-max calibration misses a 1-point budget: one wild pixel in the calibration data
    spends the input's whole INT8 range; keeping the most sensitive layers in float meets it."""
    from tests.calibrate_nets import images

    recipe = write_recipe(folder, fire_net(seed=0), budget={"accuracy_drop": 1.0}, calibration__method="minmax", **fields)
    calibration = images(np.random.default_rng(5), 64, 32)
    calibration[0, 0, 0, 0] = 5000.0
    np.savez(folder / "cal.npz", x=calibration)
    return recipe


@pytest.mark.slow
def test_fit_budget_in_the_recipe_deploys_what_calibrate_fitted(tmp_path: Path, int8_path: str) -> None:
    recipe = _misses_the_budget_with_minmax(tmp_path / "r", calibration__fit_budget=True)
    plain = run_edgeq("calibrate", recipe, "--target", "local", "--no-fit-budget", "--json")  # the flag overrides the recipe
    assert plain.code == 1 and not json.loads(plain.stdout)["report"]["accuracy"]["passed"]

    result = _deploy(recipe, tmp_path / "device")
    assert result.code == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert report["passed"] and report["activated"] and report["evaluation"]["drop"] <= 1.0
    fit = report["fit"]
    assert fit["met"] and fit["kept_high_precision"] and fit["why"] and fit["predicted_drop"] <= 1.0
    assert set(fit["sensitivity"]) == set(fit["kept_high_precision"])
    calibrated = json.loads((tmp_path / "r" / "edgeq-out" / "tiny" / "local" / "report.json").read_text())
    assert fit["kept_high_precision"] == calibrated["kept_high_precision"] and fit["widened"] == calibrated["widened"]
    assert calibrated["statistics_reused"]  # deploy calibrated again (with the fit), from calibrate's statistics
    page = (Path(report["files"]["folder"]) / "report.html").read_text()
    assert "Budget fit" in page and all(layer in page for layer in fit["kept_high_precision"])
    shown = run_edgeq("deploy", recipe, "--target", "local", "--workdir", tmp_path / "device")
    assert shown.code == 0 and "Budget fit (met" in shown.stdout
    assert all(layer in shown.stdout for layer in fit["kept_high_precision"])


@pytest.mark.slow
def test_deploy_fit_budget_flag_overrides_the_recipe(tmp_path: Path) -> None:
    recipe = _misses_the_budget_with_minmax(tmp_path / "r")
    plain = _deploy(recipe, tmp_path / "device")
    assert plain.code == 1 and "accuracy drop" in plain.stderr  # measured on the device, like the prediction
    assert json.loads(plain.stdout)[0]["fit"] is None
    fitted = _deploy(recipe, tmp_path / "device", "--fit-budget")
    assert fitted.code == 0, fitted.stderr
    assert json.loads(fitted.stdout)[0]["fit"]["kept_high_precision"]
