"""The command line's shape: commands, version, targets, recipe validation and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

import edgeq
from tests.cli import run_edgeq, run_edgeq_process


def test_help_lists_every_command() -> None:
    result = run_edgeq("--help")
    assert result.code == 0
    for command in ("check", "calibrate", "deploy", "smoke", "rollout", "targets", "recipe"):
        assert f" {command} " in result.stdout, command


def test_version() -> None:
    result = run_edgeq("--version")
    assert result.code == 0
    assert result.stdout.strip() == f"edgeq {edgeq.__version__}"


def test_the_entry_point_runs_as_a_process() -> None:
    """`python -m edgeq`, as users start it (every other test runs the command line in-process)."""
    result = run_edgeq_process("--version")
    assert result.code == 0 and result.stdout.strip() == f"edgeq {edgeq.__version__}"


def test_targets_table_lists_every_profile() -> None:
    result = run_edgeq("targets")
    assert result.code == 0
    for name in ("agx-orin-jp6.2", "orin-nano-jp6.2", "agx-xavier-jp5.1", "nano-jp4.6", "agx-thor-jp7.0", "local"):
        assert name in result.stdout


def test_targets_show_orin_json() -> None:
    result = run_edgeq("targets", "show", "jetson-orin", "--json")
    assert result.code == 0
    profile = json.loads(result.stdout)
    assert profile["compute_capability"] == "8.7"
    assert profile["dla_cores"] == 2
    assert profile["tensorrt"].startswith("10.3")
    assert profile["sources"]["compute_capability"]


def test_targets_show_nano_has_no_int8() -> None:
    result = run_edgeq("targets", "show", "jetson-nano", "--json")
    assert result.code == 0
    assert json.loads(result.stdout)["int8"] is False


def test_unknown_target_exits_2_and_suggests() -> None:
    result = run_edgeq("targets", "show", "jetson-orni")
    assert result.code == 2
    assert "jetson-orin" in result.stderr


def _write_recipe(folder: Path, data: dict) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


GOOD = {
    "name": "demo",
    "model": "model.onnx",
    "inputs": [{"name": "data", "shape": ["N", 3, 32, 32]}],
    "calibration": {"path": "images"},
    "validation": {"path": "images"},
}


def test_recipe_with_misspelled_field_exits_2_naming_it(tmp_path: Path) -> None:
    data = {**GOOD, "calibration": {"path": "images", "batchsize": 8}}
    result = run_edgeq("recipe", "validate", _write_recipe(tmp_path, data))
    assert result.code == 2
    assert "calibration.batchsize" in result.stderr
    assert "batch_size" in result.stderr  # the suggestion
    assert "recipe.yaml" in result.stderr


def test_recipe_missing_files_named(tmp_path: Path) -> None:
    result = run_edgeq("recipe", "validate", _write_recipe(tmp_path, GOOD))
    assert result.code == 2
    assert "model:" in result.stderr and "model.onnx does not exist" in result.stderr


def test_recipe_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    result = run_edgeq("recipe", "validate", path)
    assert result.code == 2
    assert "not valid YAML at line" in result.stderr


def test_recipe_schema_is_json_schema() -> None:
    result = run_edgeq("recipe", "schema")
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert {"model", "inputs", "calibration", "validation"} <= set(schema["required"])
