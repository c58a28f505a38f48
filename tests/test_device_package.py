"""The device package ships alone to Python 3.8 devices: 3.8 syntax, relative imports, no host-only modules."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgeq" / "device"
SOURCES = sorted(PACKAGE.glob("*.py"))
HOST_ONLY = ["typer", "rich", "fabric", "paramiko", "pydantic", "yaml", "onnx", "onnx_graphsurgeon", "polygraphy",
             "onnxruntime", "tensorrt", "edgeq.errors", "edgeq.cli", "edgeq.recipe"]
ALLOWED_TOP_LEVEL = set(sys.stdlib_module_names) | {"numpy"}
LAZY = {"onnx", "onnxruntime", "tensorrt"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_python38_syntax_and_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), feature_version=(3, 8))
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body)
    if not future:  # annotations are evaluated at import: list[int] and X | Y would fail on 3.8
        annotations = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.AnnAssign, ast.arg)) and n.annotation]
        annotations += [n.returns for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.returns]
        for annotation in annotations:
            for node in ast.walk(annotation):
                assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)), path.name
                assert not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                            and node.value.id in ("list", "dict", "tuple", "set", "type")), path.name
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            assert node.module.split(".")[0] in ALLOWED_TOP_LEVEL | LAZY, (path.name, node.module)
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in ALLOWED_TOP_LEVEL | LAZY, (path.name, alias.name)
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    for node in top_level:
        names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
        assert not any(name and name.split(".")[0] in LAZY for name in names), (path.name, names)


def test_import_pulls_no_host_only_module() -> None:
    code = ("import json, sys, edgeq.device.cli, edgeq.device.agent, edgeq.device.trt_backend, edgeq.device.report; "
            f"print(json.dumps(sorted(m for m in sys.modules if m in {set(HOST_ONLY)!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parents[1], stdout=subprocess.PIPE, text=True,
                          check=True)
    assert json.loads(done.stdout) == []


def test_runs_as_a_standalone_package_under_another_name(tmp_path: Path) -> None:
    """What the host does: copy the folder's .py files, import it as a top-level package."""
    target = tmp_path / "edgeq_device"
    target.mkdir()
    for source in SOURCES:
        (target / source.name).write_text(source.read_text())
    done = subprocess.run([sys.executable, "-m", "edgeq_device", "status", "--workdir", str(tmp_path / "w")],
                          cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    assert done.returncode == 0
    status = json.loads(done.stdout)
    assert status["current"] is None and status["history"] == []
