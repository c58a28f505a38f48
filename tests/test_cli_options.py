"""Option groups: one typed object per group, the same options on every command that takes the group."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgeq.cli.options import DeviceOptions, OutputOptions, TimeoutOptions, grouped
from tests.cli import run_edgeq

DEVICE_FLAGS = ("--host", "--inventory", "--limit", "--key", "--known-hosts", "--python", "--workdir", "--timeout", "--json")


@pytest.mark.parametrize("command", ["deploy", "smoke", "rollout", "status"])
def test_device_commands_share_the_groups(command: str) -> None:
    result = run_edgeq(command, "--help")
    assert result.code == 0, result.stderr
    for flag in DEVICE_FLAGS:
        assert flag in result.stdout, f"{command} lacks {flag}"


@pytest.mark.parametrize("command", ["deploy", "smoke", "rollout", "status"])
def test_a_bad_timeout_is_one_error_on_every_command(command: str, tmp_path: Path) -> None:
    args = [command] if command == "status" else [command, str(tmp_path / "recipe.yaml")]
    result = run_edgeq(*args, "--timeout", "0")
    assert result.code == 2
    assert "--timeout: expected a number of seconds > 0, found 0" in result.stderr
    assert not (tmp_path / "edgeq-out").exists()


def test_status_needs_devices() -> None:
    result = run_edgeq("status")
    assert result.code == 2 and "give --inventory FILE or --host" in result.stderr


def test_a_command_receives_its_groups_built() -> None:
    app = typer.Typer()
    seen: list[object] = []

    @app.command()
    @grouped
    def show(name: str, *, devices: DeviceOptions, timing: TimeoutOptions, output: OutputOptions, loud: bool = False) -> None:
        seen.extend([name, devices, timing, output, loud])

    result = CliRunner().invoke(app, ["cam", "-H", "u@10.0.0.1", "-H", "10.0.0.2:2222", "--key", "k", "--timeout", "5",
                                      "--json", "--loud"])
    assert result.exit_code == 0, result.output
    name, devices, timing, output, loud = seen
    assert name == "cam" and loud is True
    assert devices == DeviceOptions(hosts=["u@10.0.0.1", "10.0.0.2:2222"], key=Path("k"))
    assert timing == TimeoutOptions(timeout=5.0) and output == OutputOptions(as_json=True)
    hosts = devices.resolve(nothing="none")
    assert [(h.label, h.key) for h in hosts] == [("u@10.0.0.1", Path("k")), ("10.0.0.2:2222", Path("k"))]
