"""`edgeq deploy` over real SSH to loopback OpenSSH devices (no mocks): reports, content addressing, host keys,
hostile paths, a device lost mid-deploy, failed gates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgeq.deploy.session import DeviceSession
from edgeq.remote.sync import DEVICE_SCRIPT
from tests.calibrate_nets import fire_net, write_recipe
from tests.cli import CliResult, run_edgeq
from tests.devices.fleet import Device

pytestmark = pytest.mark.ssh


def _host_args(device: Device) -> list[str]:
    host = device.host
    return ["--host", f"{host.user}@{host.address}", "--key", str(host.key), "--known-hosts", str(host.known_hosts),
            "--python", host.python]


def _deploy(recipe: Path, device: Device, *extra: str) -> CliResult:
    return run_edgeq("deploy", recipe, "--target", "local", *_host_args(device), "--json", *extra)


def _current(device: Device) -> str | None:
    with DeviceSession.open(device.host) as session:
        return session.status().current


def test_deploy_over_ssh_then_redeploy_sends_no_model_bytes(ssh_fleet, tmp_path: Path) -> None:
    (device,) = ssh_fleet(1)
    recipe = write_recipe(tmp_path / "r", fire_net())
    first_run = _deploy(recipe, device)
    assert first_run.code == 0, first_run.stderr
    (first,) = json.loads(first_run.stdout)
    assert first["host"] == device.host.label and first["activated"]
    assert first["evaluation"]["fp32"] == 100.0
    assert first["transfer"]["files_sent"] == 5  # 4 artifacts and the agent
    model_bytes = (tmp_path / "r" / "edgeq-out" / "tiny" / "local" / "model.fp32.onnx").stat().st_size
    assert first["transfer"]["bytes_sent"] > model_bytes
    # the engine really is on the device, in the device user's home
    assert (device.home / ".edgeq" / "engines" / first["engine_id"] / "build.json").is_file()
    assert _current(device) == first["engine_id"]

    second = json.loads(_deploy(recipe, device).stdout)[0]
    assert second["transfer"]["files_sent"] == 0
    # commands only (one of them carries the device's blob-store script): no model bytes
    assert second["transfer"]["bytes_sent"] < model_bytes + len(DEVICE_SCRIPT)
    assert second["build_reused"]


def test_unknown_host_key_is_refused_with_instructions(ssh_fleet, tmp_path: Path) -> None:
    (device,) = ssh_fleet(1)
    recipe = write_recipe(tmp_path / "r", fire_net())
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    args = _host_args(device)
    args[args.index("--known-hosts") + 1] = str(empty)
    result = run_edgeq("deploy", recipe, "--target", "local", *args)
    assert result.code == 3
    assert device.address in result.stderr
    assert "ssh-keyscan" in result.stderr and "SHA256:" in result.stderr
    assert empty.read_text() == ""  # never auto-added
    assert not (device.home / ".edgeq").exists()


def test_recipe_folder_with_hostile_name_deploys(ssh_fleet, tmp_path: Path) -> None:
    (device,) = ssh_fleet(1)
    folder = tmp_path / "my models 'q' \"dq\" $(touch pwned) `id`"
    recipe = write_recipe(folder, fire_net())
    result = _deploy(recipe, device)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)[0]["activated"]
    assert not list(Path("/").glob("pwned")) and not list(tmp_path.rglob("pwned"))
    assert not list(device.home.rglob("pwned"))


def test_failed_gate_over_ssh_keeps_the_previous_engine(ssh_fleet, tmp_path: Path) -> None:
    (device,) = ssh_fleet(1)
    recipe = write_recipe(tmp_path / "r", fire_net())
    good = json.loads(_deploy(recipe, device).stdout)[0]
    data = yaml.safe_load(recipe.read_text())
    data["budget"]["latency_p99_ms"] = 1e-6
    recipe.write_text(yaml.safe_dump(data))
    result = _deploy(recipe, device)
    assert result.code == 1
    assert _current(device) == good["engine_id"]


def test_device_lost_mid_deploy_exits_3_and_keeps_the_previous_engine(ssh_fleet, tmp_path: Path) -> None:
    (device,) = ssh_fleet(1)
    recipe = write_recipe(tmp_path / "r", fire_net())
    good = json.loads(_deploy(recipe, device).stdout)[0]
    changed = write_recipe(tmp_path / "changed", fire_net(seed=3))
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeq", "deploy", changed, "--target", "local", *_host_args(device)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    engines = device.home / ".edgeq" / "engines"
    deadline = time.monotonic() + 120
    # wait until the new engine is built on the device, then take the device away mid-deploy
    while not any(p.name != good["engine_id"] and (p / "build.json").exists() for p in engines.glob("*")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the new engine was never built"
        time.sleep(0.05)
    device.stop()
    device.kill_sessions()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stderr
    assert device.address in stderr
    # read the device's own disk: its sshd is gone
    assert Path(os.readlink(device.home / ".edgeq" / "current")).name == good["engine_id"]


@pytest.mark.parametrize("spec", ["edgeq-dev@127.0.0.250", "edgeq-dev@127.0.0.250:2222"])
def test_unreachable_host_exits_3_naming_it(spec: str, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r", fire_net())
    known = tmp_path / "known_hosts"
    known.write_text("")
    result = run_edgeq("deploy", recipe, "--target", "local", "--host", spec, "--known-hosts", known)
    assert result.code == 3
    assert "127.0.0.250" in result.stderr


def _tamper_agent(device: Device, module: str, old: str, new: str) -> None:
    """Edit the agent unpacked on the device: from now on it answers what ``new`` makes it answer."""
    (path,) = (device.home / ".edgeq" / "agent").glob(f"*/edgeq_device/{module}")
    text = path.read_text()
    assert old in text, f"{module} no longer contains {old!r}"
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize(
    ("module", "old", "new", "field"),
    [
        ("probe.py", "backends=backends,", "backends=7,", "backends"),  # wrong type from probe, before the build
        ("latency.py", "p99_ms=float(np.percentile(times, 99)),", "p99_ms=str(np.percentile(times, 99)),", "int8.p99_ms"),
    ],
    ids=["probe-backends-7", "bench-p99-as-text"],
)
def test_a_wrong_answer_exits_3_naming_field_and_device_with_the_previous_engine_current(
    ssh_fleet, tmp_path: Path, module: str, old: str, new: str, field: str
) -> None:
    (device,) = ssh_fleet(1)
    recipe = write_recipe(tmp_path / "r", fire_net())
    good = json.loads(_deploy(recipe, device).stdout)[0]
    _tamper_agent(device, module, old, new)
    changed = write_recipe(tmp_path / "changed", fire_net(seed=3))
    result = _deploy(changed, device)
    assert result.code == 3, result.stderr
    assert device.host.label in result.stderr and f"answered a wrong value: {field}:" in result.stderr
    assert json.loads(result.stdout) == []  # no report: the device was never judged
    assert Path(os.readlink(device.home / ".edgeq" / "current")).name == good["engine_id"]


def test_one_devices_wrong_answer_does_not_stop_the_next(ssh_fleet, tmp_path: Path) -> None:
    wrong, right = ssh_fleet(2)
    first = write_recipe(tmp_path / "r", fire_net())
    assert _deploy(first, wrong).code == 0  # its agent is unpacked there now
    _tamper_agent(wrong, "latency.py", "p99_ms=float(np.percentile(times, 99)),", "p99_ms=str(np.percentile(times, 99)),")
    recipe = write_recipe(tmp_path / "changed", fire_net(seed=4), budget={"accuracy_drop": 5.0, "latency_p99_ms": 1e4})
    hosts = ["--host", f"{wrong.host.user}@{wrong.address}", *_host_args(right)]
    result = run_edgeq("deploy", recipe, "--target", "local", *hosts, "--json")
    assert result.code == 3
    assert f"{wrong.host.label}: agent `bench` answered a wrong value: int8.p99_ms" in result.stderr
    (report,) = json.loads(result.stdout)  # the second device was deployed all the same
    assert report["host"] == right.host.label and report["activated"]
    assert _current(right) == report["engine_id"]


def test_a_frozen_device_makes_deploy_exit_3_within_its_timeout(ssh_fleet, tmp_path: Path) -> None:
    (device,) = ssh_fleet(1)
    recipe = write_recipe(tmp_path / "r", fire_net())
    good = json.loads(_deploy(recipe, device).stdout)[0]
    changed = write_recipe(tmp_path / "changed", fire_net(seed=5))
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeq", "deploy", changed, "--target", "local", *_host_args(device), "--timeout", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    engines = device.home / ".edgeq" / "engines"
    deadline = time.monotonic() + 120
    try:
        while not any(p.name != good["engine_id"] and (p / "build.json").exists() for p in engines.glob("*")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the new engine was never built"
            time.sleep(0.05)
        device.pause()  # sshd and every process of the device frozen, mid-deploy
        frozen = time.monotonic()
        _, stderr = process.communicate(timeout=120)
        waited = time.monotonic() - frozen
    finally:
        device.resume()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 3, stderr
    assert "stopped answering" in stderr and device.address in stderr
    assert waited < 30, f"deploy waited {waited:.1f} s on a frozen device with --timeout 4"
    assert _current(device) == good["engine_id"]
