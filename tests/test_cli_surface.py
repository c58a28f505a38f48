"""What a new user meets first: `--version` answers without loading the libraries, usage lines read as people
write them (no `{RECIPE}`, no `<bool>`), and the recipe schema holds only fields a recipe may have."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import edgeq
from tests.cli import ENV, run_edgeq

# Libraries `edgeq --version` must not load (each costs tens to hundreds of ms; together seconds on a busy host).
HEAVY = ("typer", "click", "rich", "numpy", "onnx", "onnxruntime", "fabric", "paramiko", "invoke", "pydantic", "yaml",
         "matplotlib", "PIL", "edgeq.cli.boundary", "edgeq.cli.app", "edgeq.recipe")


def test_version_imports_nothing_heavy() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgeq", "--version"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **ENV})
    assert done.returncode == 0 and done.stdout == f"edgeq {edgeq.__version__}\n"
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "edgeq.cli" in imported  # the measurement itself works
    loaded = sorted(name for name in imported for heavy in HEAVY if name == heavy or name.startswith(heavy + "."))
    assert loaded == []


def test_version_after_other_arguments_still_goes_through_typer() -> None:
    result = run_edgeq("--version", "--help")
    assert result.code == 0 and result.stdout.strip() == f"edgeq {edgeq.__version__}"


USAGE = {
    ("deploy",): "edgeq deploy [OPTIONS] RECIPE",
    ("smoke",): "edgeq smoke [OPTIONS] RECIPE",
    ("rollout",): "edgeq rollout [OPTIONS] [RECIPE]",
    ("rollback",): "edgeq rollback [OPTIONS] RECIPE",
    ("calibrate",): "edgeq calibrate [OPTIONS] RECIPE",
    ("check",): "edgeq check [OPTIONS] MODEL_OR_RECIPE",
    ("recipe", "validate"): "edgeq recipe validate [OPTIONS] RECIPE",
    ("recipe", "schema"): "edgeq recipe schema [OPTIONS]",
    ("targets", "show"): "edgeq targets show [OPTIONS] NAME",
    ("status",): "edgeq status [OPTIONS]",
    ("gc",): "edgeq gc [OPTIONS]",
    (): "edgeq [OPTIONS] COMMAND [ARGS]...",
}


@pytest.mark.parametrize("command", list(USAGE), ids=lambda c: " ".join(c) or "edgeq")
def test_usage_lines_and_flags_read_as_people_write_them(command: tuple[str, ...]) -> None:
    result = run_edgeq(*command, "--help")
    assert result.code == 0
    (usage,) = [line.strip() for line in result.stdout.splitlines() if "Usage:" in line]
    assert usage == f"Usage: {USAGE[command]}"
    assert "<bool>" not in result.stdout
    flag = next(line for line in result.stdout.splitlines() if "--help" in line)
    assert re.search(r"--help\s+Show this message and exit\.", flag), flag  # no type between a flag and its help


def _properties(schema: object) -> set[str]:
    """Every property name declared anywhere in a JSON Schema."""
    if isinstance(schema, dict):
        found = set(schema.get("properties", {})) if isinstance(schema.get("properties"), dict) else set()
        return found.union(*(_properties(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_properties(value) for value in schema))
    return set()


def test_the_schema_shows_only_recipe_fields() -> None:
    schema = json.loads(run_edgeq("recipe", "schema").stdout)
    names = _properties(schema)
    assert "folder" not in names and "source" not in names
    assert set(schema["properties"]) == {"name", "model", "inputs", "preprocess", "calibration", "validation", "budget",
                                         "build", "devices", "classes"}


@pytest.mark.parametrize("internal", ["folder", "source"])
def test_internal_fields_are_refused_in_a_recipe(tmp_path: Path, internal: str) -> None:
    recipe = {"name": "r", "model": "m.onnx", "inputs": [{"name": "x", "shape": [1, 3]}], "calibration": {"path": "c"},
              "validation": {"path": "v"}, internal: "/etc"}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = run_edgeq("recipe", "validate", path)
    assert result.code == 2 and f"{internal}: unknown field" in result.stderr


def test_the_recipe_still_knows_its_file_and_folder(tmp_path: Path) -> None:
    from edgeq.recipe import parse

    recipe = parse({"name": "r", "model": "m.onnx", "inputs": [{"name": "x", "shape": [1, 3]}], "calibration": {"path": "c"},
                    "validation": {"path": "v"}}, tmp_path / "sub" / "recipe.yaml")
    assert recipe.folder == (tmp_path / "sub").resolve() and recipe.source == (tmp_path / "sub" / "recipe.yaml").resolve()
    assert recipe.model_path == (tmp_path / "sub" / "m.onnx").resolve()
    assert recipe.model_copy().folder == recipe.folder and "folder" not in recipe.model_dump()
