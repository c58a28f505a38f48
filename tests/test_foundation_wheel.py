"""The wheel ships what edgeq reads at run time: the target profiles, the check rules and the device agent."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_carries_targets_rules_and_agent(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("edgeq-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    profiles = {f"edgeq/_targets/{p.name}" for p in (ROOT / "targets").glob("*.yaml")}
    rules = {f"edgeq/check/rules/{p.name}" for p in (ROOT / "edgeq" / "check" / "rules").glob("*.yaml")}
    agent = {f"edgeq/device/{p.name}" for p in (ROOT / "edgeq" / "device").glob("*.py")}
    assert profiles and profiles <= names
    assert rules and rules <= names and "edgeq/check/data/onnx-tensorrt-op-support.csv" in names
    assert agent <= names
    assert not any("edgeq-out" in n or n.startswith("tests/") for n in names)
