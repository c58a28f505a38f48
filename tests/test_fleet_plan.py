"""The rollout plan and the command line before any device is touched: dry runs, input errors, views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from edgeq.deploy.steps import Built, Phase, Probed, Status, Step
from edgeq.deploy.wire import BuildReport, ProbeReport
from edgeq.errors import InputError
from edgeq.fleet import state
from edgeq.fleet.journal import Journal
from edgeq.fleet.plan import RolloutOptions, plan_rollout
from edgeq.fleet.recorder import Recorder
from edgeq.fleet.state import WaveStatus
from edgeq.fleet.status import DeviceStatus
from edgeq.fleet.summary import summarize
from edgeq.fleet.verdict import Outcome
from edgeq.hosts import load_inventory
from edgeq.recipe import load as load_recipe
from edgeq.report.rollout_view import live_view, plan_view, status_view, summary_view
from tests.calibrate_nets import fire_net, write_recipe
from tests.cli import run_edgeq
from tests.test_fleet_journal import _header


def _fleet(folder: Path, count: int, **fields: object) -> Path:
    hosts = {f"cam-{i + 1:02d}": {"address": f"10.0.0.{i + 1}", **fields} for i in range(count)}
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump({"hosts": hosts}))
    return path


def _render(renderable: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_recipe(tmp_path_factory.mktemp("plan"), fire_net())


def test_plan_targets_waves_and_budgets(recipe: Path, tmp_path: Path) -> None:
    hosts = load_inventory(_fleet(tmp_path, 10))
    hosts[3] = hosts[3].model_copy(update={"target": "orin-nano-jp6.2"})
    options = RolloutOptions(waves="1,25%,100%", max_failures="20%", target="local")
    plan = plan_rollout(load_recipe(recipe), hosts, options)
    assert [len(w) for w in plan.waves] == [1, 2, 7]
    assert plan.allowances == [0, 0, 1]
    assert plan.targets["cam-04"] == "orin-nano-jp6.2" and plan.targets["cam-01"] == "local"
    text = _render(plan_view(plan))
    assert "canary" in text and "cam-01" in text and "accuracy drop <= 5" in text and "<= 20%" in text


def test_a_host_without_target_names_itself(recipe: Path, tmp_path: Path) -> None:
    hosts = load_inventory(_fleet(tmp_path, 2))
    with pytest.raises(InputError, match="host 'cam-01': no target profile"):
        plan_rollout(load_recipe(recipe), hosts, RolloutOptions())


def test_dry_run_json_touches_nothing(recipe: Path, tmp_path: Path) -> None:
    inventory = _fleet(tmp_path, 8, target="local")
    result = run_edgeq("rollout", recipe, "--inventory", inventory, "--dry-run", "--json", "--max-failures", "25%")
    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [len(w["devices"]) for w in plan["waves"]] == [1, 1, 6]
    assert [w["failures_allowed"] for w in plan["waves"]] == [0, 0, 1]
    assert not (recipe.parent / "edgeq-out" / "rollouts").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--waves", "1,abc"], "--waves"),
        (["--max-failures", "lots"], "--max-failures"),
        (["--concurrency", "0"], "--concurrency"),
        (["--limit", "nosuch"], "no host or group matches 'nosuch'"),
        (["--target", "jetson-orni"], "unknown target 'jetson-orni'"),
    ],
)
def test_bad_input_exits_2_with_one_message(recipe: Path, tmp_path: Path, args: list[str], message: str) -> None:
    inventory = _fleet(tmp_path, 3)
    result = run_edgeq("rollout", recipe, "--inventory", inventory, "--dry-run", "--target", "local", *args)
    assert result.code == 2, result.stdout
    assert message in result.stderr


def test_resume_of_an_unknown_id_exits_2(recipe: Path) -> None:
    result = run_edgeq("rollout", recipe, "--resume", "20990101-000000-beef")
    assert result.code == 2 and "no rollout journal with id" in result.stderr


def test_views_render_from_state_alone(tmp_path: Path) -> None:
    header = _header()
    rec = Recorder(Journal.create(tmp_path, header), state.initial(header))
    rec.wave(0, WaveStatus.START)
    with rec.step("a", Step.STATUS) as out:
        out.result = Status(current="e0", previous=None, engines=["e0"])
    with rec.step("a", Step.PROBE) as out:
        out.result = Probed(probe=ProbeReport.model_validate(PROBE), device_class="Orin/trt10.3/sm8.7/gpu")
    with rec.step("a", Step.BUILD) as out:
        out.result = Built(build=BuildReport.model_validate(BUILD))
        out.remote_seconds = 2.5
    with rec.step("a", Step.ACTIVATE):
        pass
    rec.device("a", Phase.DONE)
    rec.wave(0, WaveStatus.PASSED, reason="1 of 1 devices on the new engine")
    rec.end(Outcome.COMPLETED, 0)
    report = summarize(rec.state)
    a = next(d for d in report.devices if d.name == "a")
    assert a.engine_before == "e0" and a.engine_now == "e1" and a.build_seconds == 2.0 and a.remote_seconds == 2.5
    assert a.device_class == "Orin/trt10.3/sm8.7/gpu" and a.engine_source == "build"
    assert report.builds == 1 and report.device_path_seconds == 2.5
    assert "Orin/trt10.3/sm8.7/gpu" in _render(live_view(rec.state))
    text = _render(summary_view(report))
    assert "completed" in text and "e1" in text and "wave 1: passed" in text
    rows = [DeviceStatus(name="a", label="u@h", engine="e1", recipe="demo", by="me"), DeviceStatus(name="b", label="u@k", error="refused")]
    text = _render(status_view(rows))
    assert "e1" in text and "demo" in text and "refused" in text


PROBE = {
    "l4t": "36.4.3", "module": "NVIDIA Jetson AGX Orin", "soc": "tegra234", "compute_capability": "8.7", "gpu_int8": True,
    "dla_cores": 2, "tensorrt_version": "10.3.0", "tensorrt_source": "python", "tensorrt_python": True,
    "trtexec": "/usr/src/tensorrt/bin/trtexec", "cpu_model": "Cortex-A78AE", "cpu_cores": 12, "memory_mb": 62000,
    "machine": "aarch64", "python": "3.10.12", "onnxruntime_version": None, "backends": ["tensorrt"],
}
_ARTIFACT = {"path": "engine.plan", "size_bytes": 10, "sha256": "0" * 64}
BUILD = {
    "engine_id": "e1", "backend": "tensorrt", "backend_version": "10.3.0",
    "options": {"model": "/w/blobs/m", "quantization": "explicit", "precision": "int8"},
    "engine": {"artifact": _ARTIFACT, "seconds": 1.9}, "reference": {"artifact": _ARTIFACT, "seconds": 0.1},
    "built_at": "2026-01-28T06:15:00Z", "seconds": 2.0,
}


def test_a_rollouts_fit_budget_flag_is_journaled_and_resume_calibrates_alike(tmp_path: Path) -> None:
    from edgeq.fleet import rollout as rollouts
    from tests.test_deploy_local import _misses_the_budget_with_minmax

    path = _misses_the_budget_with_minmax(tmp_path / "r")  # the recipe does not ask for the fit: the flag does
    hosts = load_inventory(_fleet(tmp_path, 2, target="local"))
    begun = rollouts.begin(plan_rollout(load_recipe(path), hosts, RolloutOptions(fit_budget=True)), progress=False)
    assert begun.header.fit_budget is True and begun.journal is not None
    assert begun.plans["local"].calibration.report.kept_high_precision  # fitted, as asked
    resumed = rollouts.resume(begun.journal.path, progress=False)  # the same engine, or an InputError
    assert resumed.plans["local"].engine_id == begun.plans["local"].engine_id
    assert resumed.plans["local"].calibration.reused
